"""gc and revoke figures in the local cloud: gc's staged rules over 10,000 AMIs of the app, and a
revoke of an AMI with 4 regional and 2 cross-account copies.

Registers N AMIs (default 10,000) of the app in the dev account and region of this repository's
project (each with its own root snapshot, as moto makes them), a fleet on one of them, a pin and a
few healthy releases in the ledger, then times ``GC.run()`` as ``baker gc`` runs it:
- a dry run with the default --older-than (every AMI is minutes old, so all are kept as young);
- a dry run with --older-than 0 (all but the held ones would be deprecated);
then a revoke (``Revoke.run``) of one more AMI of the app that has 4 regional copies (dev copies to
4 more regions) and 2 cross-account copies (prod's account, its home region and one copy region),
among the N; then the three ``gc --apply`` runs with both ages 0 (--older-than 0) that deprecate,
disable, and deregister the unused N with their snapshots (``--stages``: they take minutes).
Each counts the AWS calls it made (botocore event hook), per operation.

Run as root: ``python bench/bench_gc.py [--amis N] [--stages]``. It makes its own loopback-only network
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

import yaml  # noqa: E402
from privatecloud import private_cloud  # noqa: E402

from baker import provenance  # noqa: E402
from baker.aws import AWS  # noqa: E402
from baker.config import Environment, load_project  # noqa: E402
from baker.gc import GC  # noqa: E402
from baker.ledger import Ledger  # noqa: E402
from baker.local import cloud  # noqa: E402
from baker.revoke import Revoke  # noqa: E402

REGION, ACCOUNT, PROD_ACCOUNT = "us-east-1", "123456789012", "210987654321"
DEV_COPIES = ["us-east-2", "us-west-1", "us-west-2", "eu-west-1"]


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
    """An aws_for whose clients (every region's) count their calls (fresh sessions, as the CLI
    makes them)."""
    counter: Counter[str] = Counter()
    made: dict[str, AWS] = {}

    def hook(model: Any, **_: Any) -> None:
        counter[f"{model.service_model.endpoint_prefix}.{model.name}"] += 1

    def aws_for(env: Environment) -> AWS:
        if env.name not in made:
            s = env.settings.aws
            aws = cloud.aws(s.region, s.account_id, state_dir=state)
            aws.session().events.register("before-call", hook)  # before any client is made
            made[env.name] = aws
        return made[env.name]

    return aws_for, counter


def copies(state: Path, app: str) -> str:
    """One more AMI of the app in dev (us-east-1), its 4 regional copies (the same bake) and 2 copies
    promoted into prod's account (us-west-2 and eu-west-1); returns the AMI."""
    bake = {provenance.RECIPE: "bench-recipe", provenance.BUILT_AT: "2026-12-01T00:00:00Z"}

    def register(region: str, account: str, **tags: str) -> str:
        ec2 = cloud.aws(region, account, state_dir=state).client("ec2")
        ami = ec2.register_image(
            Name=f"{app}-revoke-{region}-{account}",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
        )["ImageId"]
        every = {"baker:app": app, "baker:version": "6.6.6", **bake, **tags}
        ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in every.items()])
        return str(ami)

    root = register(REGION, ACCOUNT)
    for region in DEV_COPIES:
        register(region, ACCOUNT)
    for region in ("us-west-2", "eu-west-1"):
        register(region, PROD_ACCOUNT, **{provenance.PROMOTED_FROM: f"{root} {REGION} dev"})
    return root


def spread(root: Path) -> None:
    """dev copies to 4 more regions, prod to one more: the revoke's places."""
    for env, regions in (("dev", DEV_COPIES), ("prod", ["eu-west-1"])):
        path = root / "environments" / f"{env}.yml"
        data = yaml.safe_load(path.read_text())
        data.setdefault("bake", {})["copy_to_regions"] = list(regions)
        path.write_text(yaml.safe_dump(data))


def timed(
    project: Any, state: Path, apply: bool = False, **kwargs: Any
) -> tuple[float, dict[str, Any], Counter[str]]:
    envs = [project.environment(n) for n in project.environment_names()]
    aws_for, counter = counted(state)
    started = time.perf_counter()
    result = GC(project, envs, aws_for, **kwargs).run(apply=apply)
    return time.perf_counter() - started, result, counter


def calls_of(counter: Counter[str]) -> str:
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counter.items()))
    return f"{sum(counter.values())} ({detail})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amis", type=int, default=10_000)
    parser.add_argument("--stages", action="store_true", help="also the three gc --apply runs")
    parser.add_argument("--keep", action="store_true", help="leave the temp dir (state, logs) behind")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each figure as it comes
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
            staged = len(result["deprecated"])
            print(
                f"    wall time {secs:6.1f} s; would delete {deleted}, deprecate {staged}, keep {kept}, "
                f"free {freed:.0f} GiB"
            )
            print(f"    API calls: {calls_of(calls)}")
        held = {k["ami_id"]: k["reason"] for k in old["kept"]}
        print("  kept with --older-than 0:")
        for ami, reason in held.items():
            print(f"    {ami}: {reason}")

        spread(root)
        project = load_project(root)
        revoked = copies(state, app)
        envs = [project.environment(n) for n in project.environment_names()]
        aws_for, counter = counted(state)
        started = time.perf_counter()
        done = Revoke(project, envs, aws_for).run(revoked, reason="bench: CVE-2026-0000")
        secs = time.perf_counter() - started
        where = sorted(f"{m['account_id']}/{m['region']}" for m in done["revoked"])
        print(f"  revoke of {revoked} ({args.amis + 1} AMIs of {app} in {ACCOUNT}/{REGION}):")
        print(f"    wall time {secs:6.1f} s; marked {len(done['revoked'])}: {', '.join(where)}")
        print(f"    API calls: {calls_of(counter)}")

        if args.stages:
            ages = {"older_than_days": 0, "disable_after_days": 0, "delete_after_days": 0}
            for stage in ("deprecated", "disabled", "deleted"):
                secs, result, counter = timed(project, state, apply=True, **ages)
                print(f"  gc --apply, both ages 0: {len(result[stage])} {stage} in {secs:6.1f} s")
                print(f"    API calls: {calls_of(counter)}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
