"""Loopback-only network namespaces for the local cloud.

The emulator hands out fake instance addresses (10.x, 54.x, ...). Nothing may ever connect to
them, so every process of the local cloud lives in a named namespace that has only ``lo``.
A process enters one with setns(2) before it starts any thread; everything it starts inherits it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from baker import runner
from baker.errors import UsageError
from baker.local import kernel

NETNS_DIR = Path("/run/netns")
NAME = re.compile(r"^baker[a-z0-9-]{0,40}$")


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise UsageError(f"network namespace name {name!r} must start with 'baker' (a-z, 0-9, -)")


def require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError(
            "the local cloud needs root (it creates a network namespace and mounts overlays); "
            "run as root or inside a user namespace with CAP_SYS_ADMIN"
        )


def path(name: str) -> Path:
    return NETNS_DIR / name


def exists(name: str) -> bool:
    return path(name).exists()


def create(name: str) -> None:
    """Create the namespace with only loopback up. Harmless when it exists."""
    _check_name(name)
    require_root()
    if not exists(name):
        runner.output(["ip", "netns", "add", name], stage="netns")
    runner.output(["ip", "-n", name, "link", "set", "lo", "up"], stage="netns")
    assert_isolated(name)


def delete(name: str) -> None:
    """Remove the name; the namespace ends with its last process. Idempotent."""
    _check_name(name)
    if exists(name):
        runner.output(["ip", "netns", "delete", name], stage="netns", check=False)


def interfaces(name: str) -> list[str]:
    out = runner.output(["ip", "-n", name, "-o", "link", "show"], stage="netns")
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def assert_isolated(name: str) -> None:
    """Refuse to use a namespace that has anything but loopback."""
    extra = [i for i in interfaces(name) if i != "lo"]
    if extra:
        raise UsageError(
            f"network namespace {name} has interfaces other than lo ({', '.join(extra)}); "
            "refusing to run the local cloud in it"
        )


def _inode(p: str | Path) -> int:
    return os.stat(p).st_ino


def inside(name: str) -> bool:
    """Whether this process already lives in the named namespace."""
    try:
        return _inode("/proc/self/ns/net") == _inode(path(name))
    except FileNotFoundError:
        return False


def enter(name: str) -> None:
    """Move this process into the namespace (setns). Call before any thread is started."""
    _check_name(name)
    if inside(name):
        return
    require_root()
    if not exists(name):
        raise UsageError(f"network namespace {name} does not exist; run 'baker local up' first")
    assert_isolated(name)
    kernel.setns_net(path(name))


def exec_prefix(name: str) -> list[str]:
    """argv prefix that runs a program in the namespace (for processes we do not fork ourselves).

    nsenter, not ``ip netns exec``: that one also gives the program a mount namespace of its own
    with a fresh /sys, where the live instances' systemd-nspawn finds no cgroup hierarchy and
    where the overlays it mounts would be invisible to ``local down``.
    """
    _check_name(name)
    return ["nsenter", f"--net={path(name)}", "--"]
