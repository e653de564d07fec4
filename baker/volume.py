"""A root volume on the runner: a loop device, its root partition mounted, ready for a chroot.

Each step is a context manager that undoes itself on the way out, also on an error or an
interrupt (the runner forwards SIGINT to its child and raises Interrupted), in reverse order:
the binds of /proc, /sys and /dev, the mount, the loop device. While the app's roles run, a
``usr/sbin/policy-rc.d`` that answers 101 ("action forbidden", invoke-rc.d(8) and Debian's
policy-rc.d interface) keeps the .deb's maintainer scripts from starting services on the runner;
an existing one is put back after.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from baker import runner
from baker.errors import UsageError

log = logging.getLogger("baker")

POLICY_RC_D = "usr/sbin/policy-rc.d"
_FORBID = "#!/bin/sh\n# written by baker while it provisions this image: start no service\nexit 101\n"
#: a file system baker can mount as an image's root
_ROOT_FS = ("ext4", "ext3", "xfs", "btrfs")
_SECTOR = 512


def check_runner() -> None:
    """The snapshot path needs root and a loop device; say so before anything is created."""
    why = None
    if os.geteuid() != 0:
        why = "it runs as root (it attaches a loop device and mounts the image's root)"
    elif not Path("/dev/loop-control").exists():
        why = "a loop device (/dev/loop-control is missing)"
    else:
        for tool in ("losetup", "partx", "blkid", "mount", "umount"):
            if shutil.which(tool) is None:
                why = f"{tool} (util-linux)"
                break
    if why is not None:
        raise UsageError(
            f"bake.app_layer: snapshot needs {why}; this runner has not: "
            "set bake.app_layer: instance to bake the app layer with Packer instead"
        )


def cow_copy(source: Path, dest: Path) -> None:
    """A working copy of ``source`` that shares its blocks where the file system can (reflink)
    and keeps its holes."""
    runner.run(["cp", "--reflink=auto", "--sparse=always", str(source), str(dest)], capture=True, echo=False)


def partitions(image: Path) -> list[tuple[int, int]]:
    """(offset, size) in bytes of each partition of a disk image; the whole file when it has no
    partition table."""
    listed = runner.run(
        ["partx", "--raw", "--noheadings", "--output", "START,SECTORS", str(image)],
        check=False,
        capture=True,
        echo=False,
        stage="volume",
    )
    found = []
    if listed.returncode == 0:
        for line in listed.output.splitlines():
            start, _, sectors = line.strip().partition(" ")
            if start.isdigit() and sectors.strip().isdigit():
                found.append((int(start) * _SECTOR, int(sectors) * _SECTOR))
    return found or [(0, image.stat().st_size)]


def root_partition(image: Path) -> tuple[int, int]:
    """The largest partition with a root file system (Debian's cloud images: partition 1, ext4).
    blkid probes the image file at each partition's offset itself: no udev, no partition nodes."""
    found = []
    for offset, size in partitions(image):
        probe = runner.run(
            [
                "blkid",
                "--probe",
                "--offset",
                str(offset),
                "--output",
                "value",
                "--match-tag",
                "TYPE",
                str(image),
            ],
            check=False,
            capture=True,
            echo=False,
            stage="volume",
        )
        if probe.output.strip() in _ROOT_FS:
            found.append((size, offset))
    if not found:
        raise UsageError(f"{image.name} has no partition with a root file system ({'/'.join(_ROOT_FS)})")
    size, offset = max(found)
    return offset, size


@contextmanager
def attached(image: Path) -> Iterator[str]:
    """The image's root partition as a loop device of its own (offset and size limit), detached
    on the way out. Not ``losetup --partscan``: its partition devices need the kernel to register
    the partitions and devtmpfs or udev to make their nodes, which a container runner (this one
    included) may not do."""
    offset, size = root_partition(image)
    device = runner.output(
        ["losetup", "--find", "--show", "--offset", str(offset), "--sizelimit", str(size), str(image)],
        stage="volume",
    ).strip()
    try:
        yield device
    finally:
        runner.run(["losetup", "--detach", device], check=False, capture=True, echo=False, stage="volume")


@contextmanager
def mounted(device: str, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    runner.run(["mount", device, str(target)], capture=True, echo=False, stage="volume")
    try:
        yield target
    finally:
        runner.run(["umount", str(target)], check=False, capture=True, echo=False, stage="volume")


@contextmanager
def _bound(argv: list[str], target: Path) -> Iterator[None]:
    runner.run([*argv, str(target)], capture=True, echo=False, stage="volume")
    try:
        yield
    finally:
        result = runner.run(["umount", str(target)], check=False, capture=True, echo=False, stage="volume")
        if result.returncode != 0:  # something still holds it (a daemon a script started anyway)
            runner.run(["umount", "--lazy", str(target)], check=False, capture=True, echo=False)


@contextmanager
def no_services(root: Path) -> Iterator[None]:
    """policy-rc.d forbids starting services; the image's own one (if any) comes back after."""
    path = root / POLICY_RC_D
    kept = path.read_bytes() if path.is_file() else None
    mode = path.stat().st_mode if kept is not None else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_FORBID)
    path.chmod(0o755)
    try:
        yield
    finally:
        if kept is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(kept)
            if mode is not None:
                path.chmod(mode)


@contextmanager
def provisioning(root: Path) -> Iterator[Path]:
    """/proc, /sys and /dev of the runner bound into ``root`` and no service may start, for as
    long as the roles run."""
    with ExitStack() as stack:
        stack.enter_context(_bound(["mount", "-t", "proc", "proc"], root / "proc"))
        stack.enter_context(_bound(["mount", "-t", "sysfs", "sysfs"], root / "sys"))
        stack.enter_context(_bound(["mount", "--bind", "/dev"], root / "dev"))
        stack.enter_context(no_services(root))
        yield root
