"""What the operator-view tests (status, history, gc) build in the local cloud, through boto3.

Their own app (``ops-web``) and environments, so the ledger partitions, the AMIs (tag baker:app)
and the fleets they make never meet those of the deploy, bake or e2e tests sharing the emulator.
Fleets are a launch template and an Auto Scaling group made directly, not through Terraform: status
and gc read what AWS says, not how it got there, and a fleet costs a second instead of 70.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from baker.aws import AWS
from baker.ledger import Ledger, Release
from tests.conftest import REPO
from tests.localcloud import register_ami

APP = "ops-web"
TABLE = "baker-state"
#: name -> (region, account, copy_to_regions)
ENVIRONMENTS = {
    "ops-dev": ("us-east-1", "123456789012", []),
    "ops-stage": ("us-east-1", "123456789012", ["us-east-2"]),
    "ops-prod": ("us-west-2", "210987654321", []),
    "ops-new": ("eu-west-1", "123456789012", []),
}


def project(dest: Path, app: str = APP) -> Path:
    """A project of its own: baker.yml with ``app`` as the app's name, ENVIRONMENTS' files."""
    settings = yaml.safe_load((REPO / "baker.yml").read_text())
    settings["app"]["name"] = app
    (dest / "baker.yml").write_text(yaml.safe_dump(settings))
    files: dict[str, dict[str, Any]] = {}
    for name, (region, account, copies) in ENVIRONMENTS.items():
        files[name] = {"aws": {"region": region, "account_id": account}}
        if copies:
            files[name]["bake"] = {"copy_to_regions": copies}
    project_environments(dest, files)
    return dest


def project_environments(dest: Path, files: dict[str, dict[str, Any]]) -> None:
    """environments/: the repository's defaults.yml and one file per entry of ``files``."""
    envs = dest / "environments"
    envs.mkdir()
    (envs / "defaults.yml").write_text((REPO / "environments" / "defaults.yml").read_text())
    for name, data in files.items():
        (envs / f"{name}.yml").write_text(yaml.safe_dump(data))


def register(aws: AWS, version: str, app: str = APP, **tags: str) -> str:
    """An AMI of ``app`` (moto gives it a root snapshot of its own)."""
    return register_ami(aws, version, app, **tags)


def fleet(aws: AWS, name: str, ami: str, size: int = 2) -> dict[str, str]:
    """A launch template on ``ami`` (version 1) and a group of ``size`` instances launched from it."""
    ec2 = aws.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-{time.time_ns()}",
        LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.micro"},
    )["LaunchTemplate"]
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "1"},
        MinSize=size,
        MaxSize=max(size, 1) * 2,
        DesiredCapacity=size,
        AvailabilityZones=[f"{aws.region}a"],
    )
    return {
        "asg_name": name,
        "launch_template_id": template["LaunchTemplateId"],
        "launch_template_version": "1",
    }


def new_version(aws: AWS, template_id: str, ami: str, *, default: bool) -> str:
    """A launch template version on ``ami`` made behind baker's back (optionally the default)."""
    ec2 = aws.client("ec2")
    version = str(
        ec2.create_launch_template_version(
            LaunchTemplateId=template_id, SourceVersion="1", LaunchTemplateData={"ImageId": ami}
        )["LaunchTemplateVersion"]["VersionNumber"]
    )
    if default:
        ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=version)
    return version


def ledger(aws: AWS, env: str, app: str = APP) -> Ledger:
    return Ledger(aws, table=TABLE, app=app, env=env)


def record(book: Ledger, kind: str, ami: str | None, outcome: str = "healthy", **fields: Any) -> Release:
    """A release as a deploy would have written it (intent, then outcome)."""
    version = fields.pop("version", None)
    release = book.new(kind, ami, version=version, git_sha=f"sha-{version}" if version else None, **fields)
    book.write(release)
    release.outcome = outcome
    if outcome == "healthy":
        release.healthy_at = release.at
    return book.write(release)
