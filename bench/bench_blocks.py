"""What the local cloud's real blocks cost, measured in a local cloud of its own.

Prints:
- the disk image a bake now makes (GPT + ext4 of the merged tree, ``mke2fs -d``): seconds (median
  of --runs), its data and apparent size, for the cached root filesystem (what every bake's tree is,
  plus what provisioning wrote);
- a probe image (tests/livefleet.py, no Packer): ListSnapshotBlocks of its root snapshot (blocks,
  pages of 100, seconds) and reading every block through GetSnapshotBlock (MB/s, checksums checked);
- an app layer written straight to EBS (tests/livefleet.layer_ami: one file changed in the loop-mounted
  partition, only the differing 512 KiB blocks uploaded to a child snapshot, registered): blocks and
  bytes written against the image's data, seconds;
- one live instance of that registered AMI: seconds from RunInstances to its container running.

Run as root: ``python bench/bench_blocks.py``. It makes its own loopback-only network namespace and
local cloud under a temp dir (bench/privatecloud.py) and removes all of it at the end; the build
host's root filesystem must be cached already (``baker local up`` builds it).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from privatecloud import private_cloud  # noqa: E402

from baker.local import cloud, disks  # noqa: E402
from baker.local.blocks import BLOCK_SIZE, block_indexes  # noqa: E402
from tests.livefleet import bake_probe, layer_ami, wait_for  # noqa: E402
from tests.localcloud import LocalCloud, snapshot_blocks  # noqa: E402

MIB = 1024**2


def root_snapshot(ec2: object, ami: str) -> str:
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]  # type: ignore[attr-defined]
    return str(image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="disk images to make for the median")
    args = parser.parse_args()

    with private_cloud("blocks") as (state, _project):
        info = cloud.status(state)
        handle = LocalCloud(state_dir=state, endpoint=info["endpoint"], netns=info["netns"])
        rootfs = handle.build_host.ensure_rootfs()

        with tempfile.TemporaryDirectory(prefix="baker-bench-disk-", dir=state) as tmp:
            seconds = [disks.make_disk(rootfs, Path(tmp) / f"d{i}.img") for i in range(args.runs)]
            disk = Path(tmp) / "d0.img"
            data = len(block_indexes(disk)) * BLOCK_SIZE
            median = statistics.median(seconds)
            print(
                f"disk image of the root filesystem: {median:.2f} s median of {args.runs} "
                f"(min {min(seconds):.2f}, max {max(seconds):.2f}); {data / MIB:.0f} MiB of data in "
                f"{disk.stat().st_size / 1024**3:.0f} GiB"
            )

        ec2, ebs = handle.client("ec2"), handle.client("ebs")
        started = time.monotonic()
        probe = bake_probe(handle, "1.0.0")
        print(f"probe image made (session, files, commit with its disk): {time.monotonic() - started:.2f} s")
        snapshot = root_snapshot(ec2, probe)
        started = time.monotonic()
        pages = snapshot_blocks(ebs, snapshot, page=100)
        listed = [b for p in pages for b in p]
        print(
            f"ListSnapshotBlocks: {len(listed)} blocks in {len(pages)} pages of 100, "
            f"{time.monotonic() - started:.2f} s"
        )
        started = time.monotonic()
        for block in listed:
            got = ebs.get_snapshot_block(
                SnapshotId=snapshot, BlockIndex=block["BlockIndex"], BlockToken=block["BlockToken"]
            )
            body = got["BlockData"].read()
            assert base64.b64encode(hashlib.sha256(body).digest()).decode() == got["Checksum"]
        took = time.monotonic() - started
        rate = len(listed) * BLOCK_SIZE / MIB / took
        print(f"GetSnapshotBlock of every block: {rate:.0f} MiB/s ({took:.1f} s)")

        with tempfile.TemporaryDirectory(prefix="baker-bench-layer-", dir=state) as tmp:
            started = time.monotonic()

            def one_line(root: Path) -> None:
                (root / "srv/probe/version").write_text("1.0.1\n")

            layer = layer_ami(handle, probe, Path(tmp), one_line)
            took = time.monotonic() - started
        child = root_snapshot(ec2, layer)
        own = ebs.list_changed_blocks(FirstSnapshotId=snapshot, SecondSnapshotId=child)["ChangedBlocks"]
        written, image = len(own) * BLOCK_SIZE / MIB, len(listed) * BLOCK_SIZE / MIB
        print(
            f"app layer straight to EBS (one file changed): {len(own)} blocks, {written:.1f} MiB written = "
            f"{100 * written / image:.2f} % of the image's {image:.0f} MiB of data; {took:.2f} s "
            "(copy, mount, write, compare, upload, register)"
        )

        started = time.monotonic()
        iid = ec2.run_instances(ImageId=layer, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]

        def running() -> bool:
            found = [i for i in cloud.status(state)["instances"] if i["instance_id"] == iid]
            return bool(found and found[0].get("container_pid"))

        wait_for("the container", running, 60)
        took = time.monotonic() - started
        print(f"live instance of the registered layer: container running {took:.2f} s after RunInstances")
        ec2.terminate_instances(InstanceIds=[iid])
    return 0


if __name__ == "__main__":
    sys.exit(main())
