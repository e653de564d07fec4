"""status figures in the local cloud: five environments, their fleets at 2 and at 20 instances.

Five environments in two accounts and three regions, each deployed (a launch template and an Auto
Scaling group made through boto3, a healthy release in its ledger; one pinned). Prints, at 2 and
then at 20 instances per group:
- the wall time of ``baker --local status`` over all five as a user runs it, a process of its own
  (interpreter start and imports included), best and median of five; and in process (fresh
  sessions and clients each time, botocore's data files already parsed), best and median of five;
- the AWS API calls each environment made (botocore event hook), per operation: the same at 2 and 20.

Run as root: ``python bench/bench_status.py``. It makes its own loopback-only network namespace,
its own local cloud and project under a temp dir, and removes all of it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from privatecloud import private_cloud  # noqa: E402

from baker.aws import AWS  # noqa: E402
from baker.cli import main as baker  # noqa: E402
from baker.config import Environment, load_project  # noqa: E402
from baker.ledger import Ledger  # noqa: E402
from baker.local import cloud  # noqa: E402
from baker.status import Status  # noqa: E402

ENVIRONMENTS = {
    "dev": ("us-east-1", "123456789012"),
    "qa": ("us-east-1", "123456789012"),
    "staging": ("us-east-2", "123456789012"),
    "prod": ("us-west-2", "210987654321"),
    "prod-eu": ("eu-west-1", "210987654321"),
}
SERVICES = ("ec2", "autoscaling", "dynamodb")


def project(root: Path) -> Path:
    """Five environments in two accounts and four regions, over the repository's defaults.yml."""
    envs = root / "environments"
    envs.mkdir()
    shutil.copy(REPO / "environments" / "defaults.yml", envs / "defaults.yml")
    for name, (region, account) in ENVIRONMENTS.items():
        (envs / f"{name}.yml").write_text(yaml.safe_dump({"aws": {"region": region, "account_id": account}}))
    return root


def deploy(aws: AWS, app: str, env: str) -> str:
    ec2 = aws.client("ec2")
    ami = ec2.register_image(
        Name=f"{app}-{env}-{time.time_ns()}",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{app}-{env}", LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.micro"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    group = f"{app}-{env}"
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=group,
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
        MinSize=2,
        MaxSize=20,
        DesiredCapacity=2,
        AvailabilityZones=[f"{aws.region}a"],
    )
    ledger = Ledger(aws, table="baker-state", app=app, env=env)
    release = ledger.new(
        "deploy",
        ami,
        version="1.0.0",
        asg_name=group,
        launch_template_id=template,
        launch_template_version="1",
    )
    release.outcome = "healthy"
    ledger.write(release)
    if env == "prod":
        ledger.set_pin(ami, reason="bench", by="bench")
    return group


def scale(aws: AWS, group: str, n: int) -> None:
    asg = aws.client("autoscaling")
    asg.update_auto_scaling_group(AutoScalingGroupName=group, MinSize=n, MaxSize=n, DesiredCapacity=n)
    for _ in range(200):
        found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
        if sum(1 for i in found["Instances"] if i["LifecycleState"] == "InService") == n:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{group} did not reach {n} instances")


def cli_seconds(root: Path, runs: int = 5) -> tuple[float, float, dict[str, Any]]:
    times, out = [], {}
    for _ in range(runs):
        buf = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            code = baker(["--project", str(root), "--local", "--output", "json", "status"])
        times.append(time.perf_counter() - started)
        assert code == 0, buf.getvalue()
        out = json.loads(buf.getvalue())
    return min(times), statistics.median(times), out


def process_seconds(root: Path, runs: int = 5) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "baker", "--project", str(root), "--local", "--output", "json", "status"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        times.append(time.perf_counter() - started)
        assert proc.returncode == 0, proc.stderr
    return min(times), statistics.median(times)


def calls_per_env(project_: Any, state: Path) -> dict[str, Counter[str]]:
    counters: dict[str, Counter[str]] = {}

    def aws_for(env: Environment) -> AWS:
        s = env.settings.aws
        aws = cloud.aws(s.region, s.account_id, state_dir=state)
        counter = counters.setdefault(env.name, Counter())
        for service in SERVICES:

            def hook(model: Any, service: str = service, **_: Any) -> None:
                counter[f"{service}.{model.name}"] += 1

            aws.client(service).raw.meta.events.register("before-call", hook)
        return aws

    envs = [project_.environment(n) for n in project_.environment_names()]
    result = Status(project_, envs, aws_for).read()
    assert all(e["drift"] is False for e in result["environments"]), result
    return counters


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the temp dir (state, logs) behind")
    args = parser.parse_args()
    with private_cloud("status", parts=(), keep=args.keep) as (state, root):
        root = project(root)
        loaded = load_project(root)
        app = loaded.app.name
        groups = {}
        for env, (region, account) in ENVIRONMENTS.items():
            aws = cloud.aws(region, account, state_dir=state)
            groups[env] = (aws, deploy(aws, app, env))
        print(f"status over {len(ENVIRONMENTS)} environments in the local cloud (moto emulator)")
        for size in (2, 20):
            for aws, group in groups.values():
                scale(aws, group, size)
            p_best, p_median = process_seconds(root)
            best, median, out = cli_seconds(root)
            assert all(sum(e["fleet"]["in_service"].values()) == size for e in out["environments"])
            counters = calls_per_env(loaded, state)
            print(f"  at {size:2d} instances per group, 'baker status' over all five:")
            print(f"    own process: best {p_best:.2f} s, median {p_median:.2f} s")
            print(f"    in process:  best {best:.2f} s, median {median:.2f} s")
            for env, counter in counters.items():
                detail = ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))
                print(f"    {env:8} {sum(counter.values())} calls ({detail})")
        return 0


if __name__ == "__main__":
    sys.exit(main())
