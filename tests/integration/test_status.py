"""baker status against the local cloud: the ledger's live release next to what AWS really runs.

The fleets are made through boto3 (tests/integration/operator_cloud.py), so drift can be made the
way it happens: a launch template version and default changed by hand, a group pointed elsewhere.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from baker.aws import AWS
from baker.cli import main
from baker.config import load_project
from baker.ledger import Lock
from baker.status import EnvironmentStatus, Status
from tests.integration import operator_cloud as oc

pytestmark = pytest.mark.integration

APP = "ops-status"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return oc.project(tmp_path_factory.mktemp("status-project"), app=APP)


@pytest.fixture(scope="module")
def deployed(local_cloud: Any, root: Path) -> dict[str, Any]:
    """ops-dev and ops-prod deployed and healthy (prod in its own account and region), prod pinned."""
    out: dict[str, Any] = {}
    for env, (region, account, _) in oc.ENVIRONMENTS.items():
        if env in ("ops-new", "ops-stage"):
            continue
        aws = local_cloud.aws(region, account)
        ami = oc.register(aws, "1.0.0", app=APP)
        fleet = oc.fleet(aws, f"{APP}-{env}", ami, size=2)
        release = oc.record(oc.ledger(aws, env, app=APP), "deploy", ami, version="1.0.0", **fleet)
        out[env] = {"aws": aws, "ami": ami, "release": release, **fleet}
    oc.ledger(out["ops-prod"]["aws"], "ops-prod", app=APP).set_pin(
        out["ops-prod"]["ami"], reason="incident 7", by="oncall"
    )
    return out


def status(root: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["--project", str(root), "--local", "--output", "json", "status", *args])
    return code, json.loads(capsys.readouterr().out)


def by_env(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["env"]: e for e in result["environments"]}


def test_every_environment_is_shown_with_what_runs_there(
    deployed: dict[str, Any], root: Path, capsys: pytest.CaptureFixture
):
    code, out = status(root, capsys)
    assert code == 0
    envs = by_env(out)
    assert set(envs) == set(oc.ENVIRONMENTS), "all of the project's environments"
    dev, prod = envs["ops-dev"], envs["ops-prod"]
    for name, e in (("ops-dev", dev), ("ops-prod", prod)):
        assert e["ami_id"] == deployed[name]["ami"]
        assert (e["version"], e["git_sha"]) == ("1.0.0", "sha-1.0.0")
        assert e["deployed_at"] and e["by"]
        assert e["drift"] is False and e["drift_reasons"] == []
        assert e["fleet"]["in_service"] == {deployed[name]["ami"]: 2}
        assert e["fleet"]["launch_template_version"] == "1" and e["fleet"]["default_version"] == "1"
    assert dev["pinned"] is None
    assert prod["pinned"]["ami_id"] == deployed["ops-prod"]["ami"]
    assert (prod["pinned"]["reason"], prod["pinned"]["by"]) == ("incident 7", "oncall")
    assert (prod["account_id"], prod["region"]) == ("210987654321", "us-west-2")
    new = envs["ops-new"]
    assert (new["deployed"], new["ami_id"], new["drift"], new["fleet"], new["error"]) == (
        False,
        None,
        False,
        None,
        None,
    )

    assert main(["--project", str(root), "--local", "status"]) == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0].split()
    assert header[:2] == ["ENV", "AMI"] and "DRIFT" in header
    assert "never deployed" in text
    assert f"PINNED {deployed['ops-prod']['ami']}" in text and "'incident 7'" in text


def test_one_environment_with_e(deployed: dict[str, Any], root: Path, capsys: pytest.CaptureFixture):
    code, out = status(root, capsys, "-e", "ops-dev")
    assert code == 0 and [e["env"] for e in out["environments"]] == ["ops-dev"]


def test_a_launch_template_changed_behind_bakers_back_is_drift(
    local_cloud: Any, root: Path, capsys: pytest.CaptureFixture
):
    aws = local_cloud.aws()
    env = "ops-stage"
    good = oc.register(aws, "1.0.0", app=APP)
    fleet = oc.fleet(aws, f"{APP}-{env}", good, size=2)
    oc.record(oc.ledger(aws, env, app=APP), "deploy", good, version="1.0.0", **fleet)
    assert by_env(status(root, capsys, "-e", env)[1])[env]["drift"] is False

    other = oc.register(aws, "9.9.9-by-hand", app=APP)
    version = oc.new_version(aws, fleet["launch_template_id"], other, default=True)
    e = by_env(status(root, capsys, "-e", env)[1])[env]
    assert e["drift"] is True
    assert e["fleet"]["default_version"] == version and e["fleet"]["default_version_ami_id"] == other
    assert any("default version" in r and other in r for r in e["drift_reasons"])
    assert e["ami_id"] == good, "the ledger's live release is still what status calls live"

    aws.client("autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=fleet["asg_name"],
        LaunchTemplate={"LaunchTemplateId": fleet["launch_template_id"], "Version": version},
    )
    e = by_env(status(root, capsys, "-e", env)[1])[env]
    assert e["fleet"]["launch_template_ami_id"] == other
    assert any("the group's launch template version" in r for r in e["drift_reasons"])
    assert main(["--project", str(root), "--local", "status", "-e", env]) == 0
    assert "DRIFT: the launch template's default version" in capsys.readouterr().out


def test_an_interrupted_release_and_a_held_lock_are_shown(
    deployed: dict[str, Any], root: Path, capsys: pytest.CaptureFixture
):
    aws = deployed["ops-dev"]["aws"]
    book = oc.ledger(aws, "ops-dev", app=APP)
    oc.record(
        book,
        "deploy",
        "ami-0000000000000c001",
        outcome="interrupted",
        version="2.0.0",
        reason="interrupted; refresh cancelled; live: 2 on the old AMI",
        by="ci:42",
    )
    lock = Lock(aws, table=oc.TABLE, app=APP, env="ops-dev", lease_seconds=60, purpose="deploy ami-x")
    with lock:
        e = by_env(status(root, capsys, "-e", "ops-dev")[1])["ops-dev"]
        assert e["lock"]["owner"] == lock.owner and e["lock"]["purpose"] == "deploy ami-x"
        assert main(["--project", str(root), "--local", "status", "-e", "ops-dev"]) == 0
        text = capsys.readouterr().out
    assert e["unfinished"]["outcome"] == "interrupted" and e["unfinished"]["by"] == "ci:42"
    assert e["ami_id"] == deployed["ops-dev"]["ami"] and e["drift"] is False
    assert "deploy lock held by" in text and "is interrupted: interrupted; refresh cancelled" in text


def count_calls(aws: AWS) -> Counter[str]:
    counter: Counter[str] = Counter()
    for service in ("autoscaling", "ec2", "dynamodb"):

        def hook(model: Any, service: str = service, **_: Any) -> None:
            counter[f"{service}.{model.name}"] += 1

        aws.client(service).raw.meta.events.register("before-call", hook)
    return counter


def test_api_calls_per_environment_do_not_grow_with_the_fleet(
    deployed: dict[str, Any], local_cloud: Any, root: Path
):
    project = load_project(root)
    env = project.environment("ops-dev")
    calls = []
    for size in (2, 6):
        deployed["ops-dev"]["aws"].client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName=deployed["ops-dev"]["asg_name"],
            MinSize=size,
            MaxSize=size,
            DesiredCapacity=size,
        )
        aws = local_cloud.aws()
        counter = count_calls(aws)
        e = EnvironmentStatus(project, env, aws).read()
        assert sum(e["fleet"]["in_service"].values()) == size
        calls.append(counter)
    assert calls[0] == calls[1]
    assert calls[0]["ec2.DescribeInstances"] == 1 and calls[0]["autoscaling.DescribeAutoScalingGroups"] == 1
    assert calls[0]["ec2.DescribeLaunchTemplateVersions"] == 1


def test_an_environment_that_cannot_be_read_does_not_hide_the_others(deployed: dict[str, Any], root: Path):
    project = load_project(root)
    envs = [project.environment("ops-dev"), project.environment("ops-new")]

    def aws_for(env: Any) -> AWS:
        if env.name == "ops-new":
            return AWS(region="eu-west-1", profile="no-such-profile-here")  # fails before any call
        return deployed["ops-dev"]["aws"]

    out = by_env(Status(project, envs, aws_for).read())
    assert out["ops-dev"]["error"] is None and out["ops-dev"]["ami_id"] == deployed["ops-dev"]["ami"]
    assert out["ops-new"]["error"] and out["ops-new"]["drift"] is None
