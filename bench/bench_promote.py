"""Promotion figures in the local cloud: one region against four.

Promotes an AMI from dev (account 123456789012, us-east-1) into an environment of another account
(210987654321): once into one region, once into its home region plus three copy_to_regions. The
emulator keeps each copied image ``pending`` for ``--copy-seconds`` (as EC2 does while it copies
the snapshots; instant otherwise), so the figure shows whether the copies run concurrently.
Prints both wall times and their ratio (goal: four regions at most 1.5x one region).

Run as root: ``python bench/bench_promote.py``. It makes its own loopback-only network namespace,
local cloud and project copy under a temp dir, and removes all of it at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from privatecloud import private_cloud  # noqa: E402

from baker import provenance  # noqa: E402
from baker.config import load_project  # noqa: E402
from baker.ledger import Ledger  # noqa: E402
from baker.local import cloud  # noqa: E402
from baker.promote import Promote  # noqa: E402

DEV, OTHER = "123456789012", "210987654321"


def healthy_ami(state: Path, n: int) -> str:
    aws = cloud.aws("us-east-1", DEV, state_dir=state)
    ec2 = aws.client("ec2")
    ami = ec2.register_image(
        Name=f"bench-promote-{n}-{time.time_ns()}",
        RootDeviceName="/dev/xvda",
        Architecture="x86_64",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    ec2.create_tags(Resources=[ami], Tags=[{"Key": provenance.APP, "Value": "hello-web"}])
    ledger = Ledger(aws, table="baker-state", app="hello-web", env="dev")
    release = ledger.new("deploy", ami)
    release.outcome, release.healthy_at = "healthy", provenance.iso(provenance.utc_now())
    ledger.write(release)
    return ami


def timed(project_root: Path, state: Path, target: str) -> tuple[float, dict[str, str]]:
    project = load_project(project_root)
    src, dst = project.environment("dev"), project.environment(target)
    stage = Promote(
        project,
        src,
        dst,
        cloud.aws("us-east-1", DEV, state_dir=state),
        cloud.aws(dst.settings.aws.region, OTHER, state_dir=state),
        local=True,
    )
    started = time.monotonic()
    result = stage.run(deploy=False)
    return time.monotonic() - started, result["copies"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copy-seconds", type=float, default=5.0, help="how long a copied image is pending")
    parser.add_argument("--keep", action="store_true", help="leave the temp dir (state, logs) behind")
    args = parser.parse_args()
    with private_cloud("promote", parts=("environments",), keep=args.keep) as (state, root):
        cloud.settings({"copy_seconds": args.copy_seconds}, state)
        for env, extra in (("one", []), ("four", ["eu-west-1", "eu-central-1", "ap-southeast-2"])):
            (root / "environments" / f"{env}.yml").write_text(
                yaml.safe_dump(
                    {"aws": {"region": "us-west-2", "account_id": OTHER}, "bake": {"copy_to_regions": extra}}
                )
            )
        healthy_ami(state, 1)
        one_s, one = timed(root, state, "one")
        healthy_ami(state, 2)
        four_s, four = timed(root, state, "four")
        print(f"promote across accounts, copies pending {args.copy_seconds:g} s each in the emulator")
        print(f"  1 region  ({', '.join(sorted(one))}): {one_s:6.2f} s")
        print(f"  4 regions ({', '.join(sorted(four))}): {four_s:6.2f} s")
        print(f"  ratio 4 regions / 1 region: {four_s / one_s:.2f} (goal <= 1.5)")
        return 0


if __name__ == "__main__":
    sys.exit(main())
