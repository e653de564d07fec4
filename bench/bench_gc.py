"""gc figures in the local cloud: a dry run over 10,000 AMIs of the app.

Registers N AMIs (default 10,000) of the app in the dev account and region of this repository's
project (each with its own root snapshot, as moto makes them), a fleet on one of them, a pin and a
few healthy releases in the ledger, then times ``GC.run()`` as ``baker gc`` runs it:
- a dry run with the default --older-than (every AMI is minutes old, so all are kept as young);
- a dry run with --older-than 0 (all but the held ones would go: snapshot sizes read for each);
and counts the AWS calls each made (botocore event hook), per operation.

Run as root: ``python bench/bench_gc.py [--amis N]``. It makes its own loopback-only network
namespace, its own local cloud and project copy under a temp dir, and removes all of it at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from privatecloud import private_cloud  # noqa: E402

from baker.aws import AWS  # noqa: E402
from baker.config import Environment, load_project  # noqa: E402
from baker.gc import GC  # noqa: E402
from baker.ledger import Ledger  # noqa: E402
from baker.local import cloud  # noqa: E402

REGION, ACCOUNT = "us-east-1", "123456789012"
SERVICES = ("ec2", "autoscaling", "dynamodb")


def register_many(aws: AWS, app: str, n: int) -> list[str]:
    """N AMIs of ``app``: one RegisterImage each, tags in CreateTags batches of 200."""
    ec2 = aws.client("ec2")
    ids = []
    for i in range(n):
        ids.append(
            ec2.register_image(
                Name=f"{app}-bench-{i}",
                RootDeviceName="/dev/xvda",
                Architecture="x86_64",
                VirtualizationType="hvm",
                BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
            )["ImageId"]
        )
    for start in range(0, n, 200):
        ec2.create_tags(
            Resources=ids[start : start + 200],
            Tags=[{"Key": "baker:app", "Value": app}, {"Key": "baker:version", "Value": "1.0.0"}],
        )
    return ids


def hold(aws: AWS, app: str, ids: list[str]) -> None:
    """What keeps a few of them: a fleet, a pin, three healthy releases."""
    ec2 = aws.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{app}-bench", LaunchTemplateData={"ImageId": ids[-1], "InstanceType": "t3.micro"}
    )["LaunchTemplate"]["LaunchTemplateId"]
    aws.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=f"{app}-bench",
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
        MinSize=2,
        MaxSize=2,
        DesiredCapacity=2,
        AvailabilityZones=[f"{REGION}a"],
    )
    ledger = Ledger(aws, table="baker-state", app=app, env="dev")
    for ami in ids[-3:]:
        release = ledger.new("deploy", ami)
        release.outcome = "healthy"
        ledger.write(release)
    Ledger(aws, table="baker-state", app=app, env="staging").set_pin(ids[0], reason="bench", by="bench")


def counted(state: Path) -> tuple[Any, Counter[str]]:
    """An aws_for whose clients count their calls (fresh sessions, as the CLI makes them)."""
    counter: Counter[str] = Counter()
    made: dict[str, AWS] = {}

    def aws_for(env: Environment) -> AWS:
        if env.name not in made:
            s = env.settings.aws
            aws = cloud.aws(s.region, s.account_id, state_dir=state)
            for region in [s.region, *env.settings.bake.copy_to_regions]:
                for service in SERVICES:
                    client = aws.client(service, region) if region == s.region else None
                    if client is None:
                        continue

                    def hook(model: Any, service: str = service, **_: Any) -> None:
                        counter[f"{service}.{model.name}"] += 1

                    client.raw.meta.events.register("before-call", hook)
            made[env.name] = aws
        return made[env.name]

    return aws_for, counter


def timed(project: Any, state: Path, **kwargs: Any) -> tuple[float, dict[str, Any], Counter[str]]:
    envs = [project.environment(n) for n in project.environment_names()]
    aws_for, counter = counted(state)
    started = time.perf_counter()
    result = GC(project, envs, aws_for, **kwargs).run(apply=False)
    return time.perf_counter() - started, result, counter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amis", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true", help="leave the temp dir (state, logs) behind")
    args = parser.parse_args()
    with private_cloud("gc", parts=("environments",), keep=args.keep) as (state, root):
        project = load_project(root)
        app = project.app.name
        aws = cloud.aws(REGION, ACCOUNT, state_dir=state)

        started = time.perf_counter()
        ids = register_many(aws, app, args.amis)
        hold(aws, app, ids)
        setup = time.perf_counter() - started

        young_s, young, young_calls = timed(project, state)
        old_s, old, old_calls = timed(project, state, older_than_days=0)

        print(
            f"gc dry run in the local cloud (moto emulator), {args.amis} AMIs of {app} in {ACCOUNT}/{REGION}"
        )
        print(f"  setup (register, tag, fleet, ledger):           {setup:6.1f} s")
        for label, secs, result, calls in (
            ("default --older-than 14 (all young, kept)", young_s, young, young_calls),
            ("--older-than 0 (all but the held would go)", old_s, old, old_calls),
        ):
            print(f"  {label}:")
            deleted, kept = len(result["deleted"]), len(result["kept"])
            freed = result["bytes_freed"] / 1024**3
            print(f"    wall time {secs:6.1f} s; would delete {deleted}, keep {kept}, free {freed:.0f} GiB")
            detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
            print(f"    API calls: {sum(calls.values())} ({detail})")
        held = {k["ami_id"]: k["reason"] for k in old["kept"]}
        print("  kept with --older-than 0:")
        for ami, reason in held.items():
            print(f"    {ami}: {reason}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
