"""The shared local cloud of the integration and end-to-end levels.

One local cloud per test session (``local_cloud``): the emulator runs inside the run's own
loopback-only namespace ($BAKER_TEST_NETNS, where pytest already lives), its state in a temp dir,
the build host's root filesystem in the shared cache dir. $BAKER_LOCAL_DIR points at it, so a
``baker --local`` started by a test finds the same cloud.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from baker.aws import AWS
from baker.local import cloud


def launcher_netns() -> str | None:
    """The network namespace pytest was started from (reaches the apt sources), when it differs."""
    if os.environ.get("BAKER_FETCH_NETNS"):
        return os.environ["BAKER_FETCH_NETNS"]
    parent = f"/proc/{os.getppid()}/ns/net"
    try:
        if os.stat(parent).st_ino != os.stat("/proc/self/ns/net").st_ino:
            return parent
    except OSError:
        pass
    return None


def register_ami(
    aws: AWS, version: str, app: str = "hello-web", ebs: dict[str, Any] | None = None, **tags: str
) -> str:
    """An AMI of ``app`` registered in the emulator (with a root snapshot of its own, tagged like the
    image as a bake tags it): what tests deploy, promote or clean up when they need no Packer run.
    ``tags`` add to the provenance ones."""
    ec2 = aws.client("ec2")
    image = ec2.register_image(
        Name=f"{app}-{version}-{time.time_ns()}",
        RootDeviceName="/dev/xvda",
        Architecture="x86_64",
        VirtualizationType="hvm",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8, **(ebs or {})}}],
    )["ImageId"]
    all_tags = {"baker:app": app, "baker:version": version, "baker:git-sha": f"sha-{version}", **tags}
    (registered,) = ec2.describe_images(ImageIds=[image])["Images"]
    snapshots = [m["Ebs"]["SnapshotId"] for m in registered["BlockDeviceMappings"] if "Ebs" in m]
    # tagged as a bake tags them (the template's snapshot_tags): gc's role may touch only the app's
    ec2.create_tags(Resources=[image, *snapshots], Tags=[{"Key": k, "Value": v} for k, v in all_tags.items()])
    return image


def snapshot_blocks(ebs: Any, snapshot_id: str, page: int = 100) -> list[list[dict[str, Any]]]:
    """ListSnapshotBlocks page by page (``page`` blocks at most each), as a reader of a volume pages."""
    pages, token = [], None
    while True:
        found = ebs.list_snapshot_blocks(
            SnapshotId=snapshot_id, MaxResults=page, **({"NextToken": token} if token else {})
        )
        pages.append(found["Blocks"])
        token = found.get("NextToken")
        if not token:
            return pages


@contextlib.contextmanager
def mounted_snapshot(local_cloud: LocalCloud, snapshot_id: str, target: Path) -> Iterator[Path]:
    """The root partition of a snapshot's blocks, mounted read-only (a loop device) for the test."""
    from baker.local import disks, kernel

    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        disks.mount_argv(local_cloud.state_dir / "snapshots" / f"{snapshot_id}.img", target), check=True
    )
    try:
        yield target
    finally:
        kernel.unmount_under(target)


@dataclass
class LocalCloud:
    """What tests get: the running cloud, reached the way baker reaches it."""

    state_dir: Path
    endpoint: str
    netns: str
    _build_host: Any = field(default=None, repr=False)

    def aws(self, region: str = "us-east-1", account_id: str | None = None) -> AWS:
        return cloud.aws(region, account_id, self.state_dir)

    def client(self, service: str, region: str = "us-east-1", account_id: str | None = None) -> Any:
        """A raw boto3 client against the emulator (tests look at what AWS would answer)."""
        return self.aws(region, account_id).client(service).raw

    def set_health(self, ami_id: str, state: str | None) -> dict[str, Any]:
        return cloud.set_health(ami_id, state, self.state_dir)

    def settings(self, **values: float) -> dict[str, Any]:
        """Change the emulator's timing knobs (none: just read them); returns the values now in force."""
        return cloud.settings(values, self.state_dir)

    def status(self) -> dict[str, Any]:
        return cloud.status(self.state_dir)

    @property
    def build_host(self) -> Any:
        """The build host, its root filesystem built (or found in the cache) on first use."""
        if self._build_host is None:
            from baker.local.buildhost import BuildHost

            host = BuildHost(self.state_dir, cloud.cache_dir(), fetch_netns=launcher_netns())
            host.ensure_rootfs()
            self._build_host = host
        return self._build_host


@pytest.fixture(scope="session")
def debian_rootfs(isolated: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build host's Debian root filesystem: found in the shared cache, or built now.

    Any test that needs it asks for it, so it never depends on a fixture that happens to run
    earlier (on a fresh machine the first test to ask builds it, fetching through the namespace
    pytest was started from).
    """
    from baker.local.buildhost import BuildHost

    host = BuildHost(tmp_path_factory.mktemp("rootfs-state"), cloud.cache_dir(), fetch_netns=launcher_netns())
    return host.ensure_rootfs()


@pytest.fixture(scope="session")
def local_cloud(isolated: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    state_dir = tmp_path_factory.mktemp("local-cloud")
    previous = os.environ.get("BAKER_LOCAL_DIR")
    os.environ["BAKER_LOCAL_DIR"] = str(state_dir)
    handle = None
    try:
        info = cloud.up(state_dir, netns_name=isolated, rootfs=False)
        handle = LocalCloud(state_dir=state_dir, endpoint=info["endpoint"], netns=info["netns"])
        yield handle
    finally:
        if handle is not None and handle._build_host is not None:
            handle._build_host.down()
        cloud.down(state_dir)
        if previous is None:
            os.environ.pop("BAKER_LOCAL_DIR", None)
        else:
            os.environ["BAKER_LOCAL_DIR"] = previous
