"""Figures for layered images, side by side, for the same one-line change of the example app.
Run as root: python bench/bench_layers.py

Three ways to bake the commit, one run each, in one fresh local cloud:
- full: a project without layers (today's bake: Packer, a build instance, every role);
- instance: bake.layers with bake.app_layer: instance (Packer from the base AMI, the app roles);
- snapshot: bake.app_layer: snapshot (no instance: the base's blocks, a chroot, a child snapshot),
  once with the base's blocks fetched for the first time and once with them cached.

Prints per path: wall time here, EC2 instances launched (the emulator's DescribeInstances, before and
after), bytes written to EBS (the new root snapshot's blocks that are not its parent's: all of them
for a Packer bake, ListChangedBlocks against the base for the snapshot path) against the image's
size, and the AWS calls baker made (a botocore before-call hook; Packer's own calls are not in it).

Everything runs in a private loopback-only network namespace with a local cloud in a temp dir
(bench/privatecloud.py). The build host's root filesystem must be cached already.
"""

from __future__ import annotations

import collections
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.client
import yaml
from privatecloud import private_cloud

from baker import bake, layers
from baker.config import load_project
from baker.local import cloud

BLOCK = 524288
LAYERS = {
    "base": {"roles": ["hardening"]},
    "app": {"roles": ["app_install", "app_config", "app_service", "hardening"]},
}


@contextlib.contextmanager
def counting_aws_calls() -> Iterator[list[str]]:
    """Every AWS API call this process makes (baker's, not Packer's), by operation name."""
    calls: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation: str, params: Any) -> Any:
        calls.append(operation)
        return original(self, operation, params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]


def git(root: Path, *args: str) -> None:
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(["git", "-C", str(root), *ident, *args], check=True, capture_output=True)


def configure(root: Path, app_layer: str | None) -> None:
    path = root / "environments/defaults.yml"
    data = yaml.safe_load(path.read_text())
    data["bake"].pop("layers", None)
    data["bake"].pop("app_layer", None)
    if app_layer:
        data["bake"]["layers"] = LAYERS
        data["bake"]["app_layer"] = app_layer
    path.write_text(yaml.safe_dump(data))
    git(root, "commit", "-qam", f"app_layer {app_layer}")


def one_line_change(root: Path, n: int) -> None:
    app = root / "examples/hello-web/hello_web.py"
    app.write_text(app.read_text() + f"# change {n}\n")
    git(root, "commit", "-qam", f"change {n}")


def run(root: Path, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    project = load_project(root)
    env = project.environment("dev")
    aws = cloud.aws(env.settings.aws.region)
    ec2 = aws.client("ec2")

    def instances() -> int:
        return sum(len(r["Instances"]) for r in ec2.describe_instances()["Reservations"])

    before = instances()
    with counting_aws_calls() as calls:
        started = time.perf_counter()
        result = bake.Bake(project, env, aws, build_host=cloud.build_host()).run(**kwargs)
        seconds = time.perf_counter() - started
    image = ec2.describe_images(ImageIds=[result["ami_id"]])["Images"][0]
    root_map = next(m for m in image["BlockDeviceMappings"] if m["DeviceName"] == image["RootDeviceName"])
    snap = root_map["Ebs"]["SnapshotId"]
    direct = aws.client("ebs")
    parent = (result.get("base") or {}).get("ami_id")
    if result.get("app_layer") == "snapshot" and parent:
        base = ec2.describe_images(ImageIds=[parent])["Images"][0]
        base_snap = base["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        written = len(
            direct.list_changed_blocks(FirstSnapshotId=base_snap, SecondSnapshotId=snap)["ChangedBlocks"]
        )
    else:
        written = len(direct.list_snapshot_blocks(SnapshotId=snap)["Blocks"])
    figures = {
        "seconds": round(seconds, 1),
        "root_snapshot": snap,
        "instances_launched": instances() - before,
        "bytes_written": written * BLOCK,
        "image_bytes": root_map["Ebs"]["VolumeSize"] << 30,
        "aws_calls": len(calls),
        "aws_calls_by_operation": dict(collections.Counter(calls)),
    }
    if "snapshot" in result:
        figures["snapshot_path"] = result["snapshot"]
    return result, figures


def main() -> int:
    out: dict[str, Any] = {}
    with private_cloud("layers", parts=("environments", "packer", "ansible", "examples")) as (_, root):
        (root / ".gitignore").write_text(".baker/\n")
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "bench")
        print("full bake: a first bake, then the one-line change", file=sys.stderr)
        run(root)
        one_line_change(root, 1)
        _, out["full"] = run(root)

        configure(root, "instance")
        print("layered: the base (Packer, the nightly job), then the app layer", file=sys.stderr)
        base, out["base_bake"] = run(root, layer="base")
        one_line_change(root, 2)
        _, out["instance"] = run(root)

        configure(root, "snapshot")
        base_cache = list(layers.cache_dir().glob(f"{out['base_bake']['root_snapshot']}.img*"))
        for cached in base_cache:
            cached.unlink()
        one_line_change(root, 3)
        result, out["snapshot_first_fetch"] = run(root)
        assert result["base"]["cached"] and result["base"]["ami_id"] == base["ami_id"], result["base"]
        one_line_change(root, 4)
        _, out["snapshot"] = run(root)
        for cached in layers.cache_dir().glob(f"{out['base_bake']['root_snapshot']}.img*"):
            cached.unlink()
    print(json.dumps(out, indent=2))
    for name in ("full", "instance", "snapshot_first_fetch", "snapshot"):
        f = out[name]
        share = 100 * f["bytes_written"] / f["image_bytes"]
        print(
            f"{name:22} {f['seconds']:7.1f} s  instances {f['instances_launched']}  "
            f"written {f['bytes_written'] >> 20} MiB of {f['image_bytes'] >> 30} GiB ({share:.2f} %)  "
            f"baker's AWS calls {f['aws_calls']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
