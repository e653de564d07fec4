"""The build host's root filesystem: a minimal Debian (mmdebstrap), built once, cached by recipe.

Where it is fetched. mmdebstrap needs the apt mirror, but the local cloud lives in a loopback-only
network namespace. The cloud builds the root filesystem when it comes up, *before* it enters the
namespace (``ensure()`` then runs in the host's network). A process already inside the namespace
(the test run) may name a network namespace file with access to the apt sources (``fetch_netns``,
or ``$BAKER_FETCH_NETNS``; the tests use the one pytest was started from): then mmdebstrap alone
runs through ``nsenter --net=FILE``. Not ``/proc/1/ns/net``: PID 1 may belong to a sandbox that
denies it (as on the machine this was written on), and guessing whose network to borrow is not the
build host's call. mmdebstrap fetches only from the machine's configured apt sources.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baker import runner
from baker.errors import UsageError
from baker.local import kernel
from baker.local.disks import make_disk

log = logging.getLogger("baker")

#: what the image needs beyond minbase: Ansible's remote side (python3, python3-apt), the SSH
#: server, sudo for become, what package maintainer scripts call (adduser, deb-systemd-helper,
#: an offline ``systemctl enable`` in a chroot without a running systemd), and what Debian's AMIs
#: boot with: cloud-init, which runs an instance's user data on first boot, and D-Bus, through
#: which a user other than root asks systemd (``systemctl is-active`` in a smoke check).
ROOTFS_PACKAGES = (
    "cloud-init",
    "dbus",
    "python3",
    "python3-apt",
    "openssh-server",
    "sudo",
    "adduser",
    "init-system-helpers",
    "systemd",
)
VARIANT = "minbase"
#: the user Debian's AMIs log in with
DEFAULT_USER = "admin"
#: bump when what _customize() does changes, so the cache key changes with it
CUSTOMIZE_VERSION = 4
#: the instance's hostname (a UTS namespace of its own), resolvable through the image's /etc/hosts
DEFAULT_HOSTNAME = "baker-build"
#: cloud-init as on Debian's AMIs (user ``admin``), but only from the NoCloud seed a local instance
#: gets: no waiting on network datasources that cannot answer in a loopback-only namespace
CLOUD_CFG = """# baker local cloud: the user data comes from the NoCloud seed the local cloud writes
datasource_list: [NoCloud, None]
network: {config: disabled}
# minbase has only C.UTF-8; the default (en_US.UTF-8) fails update-locale
locale: C.UTF-8
# the key an SSH client checks (verify); fewer keys to generate, a faster first boot
ssh_genkeytypes: [ed25519]
system_info:
  default_user:
    name: admin
    lock_passwd: true
    shell: /bin/bash
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    groups: [adm, sudo]
"""
#: package scripts must start no services in the build host
POLICY_RC_D = "#!/bin/sh\n# baker build host: package scripts start no services here\nexit 101\n"


def host_apt_sources(etc_apt: Path = Path("/etc/apt")) -> list[Path]:
    """The machine's enabled apt sources (one-line .list and deb822 .sources files), in apt's order."""
    found: list[Path] = []
    main = etc_apt / "sources.list"
    if main.is_file() and any(
        line.strip() and not line.lstrip().startswith("#") for line in main.read_text().splitlines()
    ):
        found.append(main)
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        found += sorted(p for p in parts.iterdir() if p.is_file() and p.suffix in (".list", ".sources"))
    return found


def host_suite(os_release: Path = Path("/etc/os-release")) -> str:
    """The machine's own release code name: the root filesystem matches the apt sources it uses."""
    for line in os_release.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value.strip('"'):
            return value.strip('"')
    raise UsageError(f"{os_release} names no VERSION_CODENAME; cannot tell which suite to build")


def rootfs_recipe(
    suite: str,
    arch: str,
    sources: list[Path],
    packages: tuple[str, ...] = ROOTFS_PACKAGES,
    user: str = DEFAULT_USER,
) -> dict:
    """Everything that determines the root filesystem; its digest is the cache key."""
    return {
        "suite": suite,
        "arch": arch,
        "variant": VARIANT,
        "packages": sorted(packages),
        "sources": [hashlib.sha256(p.read_bytes()).hexdigest() for p in sources],
        "user": user,
        "customize": CUSTOMIZE_VERSION,
    }


def recipe_key(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def mmdebstrap_argv(
    recipe: dict, target: Path, sources: list[Path], fetch_netns: str | None = None
) -> list[str]:
    """The one command that fetches from the network; optionally run in another network namespace."""
    argv = [
        "mmdebstrap",
        "--mode=root",
        "--format=directory",
        f"--variant={recipe['variant']}",
        f"--architectures={recipe['arch']}",
        "--include=" + ",".join(recipe["packages"]),
        recipe["suite"],
        str(target),
        *(str(s) for s in sources),
    ]
    if fetch_netns:
        return ["nsenter", f"--net={fetch_netns}", "--", *argv]
    return argv


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_user(root: Path, user: str) -> None:
    """The login user of Debian's AMIs (or the bake's ssh_username): keys only, sudo without password."""
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", user):
        raise UsageError(f"invalid SSH user name {user!r}")
    passwd = (root / "etc/passwd").read_text()
    if not any(line.split(":")[0] == user for line in passwd.splitlines()):
        # password '*': no password login, but not locked (sshd refuses locked accounts without PAM)
        runner.output(
            [
                "chroot",
                str(root),
                "useradd",
                "--create-home",
                "--shell",
                "/bin/bash",
                "--user-group",
                "--groups",
                "adm,sudo",
                "--password",
                "*",
                user,
            ],
            stage="buildhost",
        )
    sudoers = root / f"etc/sudoers.d/90-baker-{user}"
    sudoers.write_text(f"{user} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)


class RootFS:
    """The cache of root filesystems under ``cache_dir/rootfs``, one per recipe key."""

    def __init__(self, cache_dir: Path, *, fetch_netns: str | Path | None = None) -> None:
        self.rootfs_dir = Path(cache_dir).resolve() / "rootfs"
        netns_file = fetch_netns or os.environ.get("BAKER_FETCH_NETNS") or None
        self.fetch_netns = str(netns_file) if netns_file else None

    def recipe(self) -> dict:
        arch = runner.output(["dpkg", "--print-architecture"], stage="rootfs").strip()
        return rootfs_recipe(host_suite(), arch, host_apt_sources())

    def path(self) -> Path:
        return self.rootfs_dir / recipe_key(self.recipe())

    def ensure(self) -> Path:
        """The cached root filesystem, built on first use (into a temp dir, renamed atomically)."""
        recipe = self.recipe()
        key = recipe_key(recipe)
        final = self.rootfs_dir / key
        if final.is_dir():
            return final
        self.rootfs_dir.mkdir(parents=True, exist_ok=True)
        with open(self.rootfs_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if final.is_dir():
                return final
            self._clean_stale_builds()
            fetch = None
            if all(n == "lo" for n in kernel.net_interfaces()):
                if not self.fetch_netns:
                    raise UsageError(
                        "the build host's root filesystem is not cached yet and this process runs in a "
                        "loopback-only network namespace, where no apt mirror is reachable: run "
                        "'baker local up' (it builds it before entering the namespace) or set "
                        "BAKER_FETCH_NETNS to a network namespace file that reaches the machine's apt sources"
                    )
                fetch = self.fetch_netns
            sources = host_apt_sources()
            if not sources:
                raise UsageError("this machine has no enabled apt sources (/etc/apt/sources.list[.d])")
            tmp = self.rootfs_dir / f".{key}.tmp-{os.getpid()}"
            log.info("building the build host's root filesystem (%s %s) in %s", recipe["suite"], key, final)
            started = time.monotonic()
            try:
                runner.run(mmdebstrap_argv(recipe, tmp, sources, fetch), stage="mmdebstrap", timeout=1800)
                self._customize(tmp)
            except BaseException:
                kernel.remove_tree(tmp)
                raise
            seconds = round(time.monotonic() - started, 1)
            os.rename(tmp, final)
            manifest: dict[str, Any] = {
                "key": key,
                "recipe": recipe,
                "built_at": now(),
                "build_seconds": seconds,
                "size_bytes": tree_size(final),
            }
            (self.rootfs_dir / f"{key}.json").write_text(json.dumps(manifest, indent=2) + "\n")
            log.info("root filesystem ready in %.0fs (%d MB)", seconds, manifest["size_bytes"] // 2**20)
            return final

    def disk(self) -> Path | None:
        """The cached root filesystem as a disk image (the source image's root snapshot), made from
        it on first use; None while the root filesystem is not built."""
        root = self.path()
        disk = root.with_name(f"{root.name}.disk.img")
        if disk.is_file() or not root.is_dir():
            return disk if disk.is_file() else None
        with open(self.rootfs_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not disk.is_file():
                make_disk(root, disk)
        return disk

    def _clean_stale_builds(self) -> None:
        for stale in self.rootfs_dir.glob(".*.tmp-*"):
            pid = stale.name.rpartition("-")[2]
            if pid.isdigit() and kernel.alive(int(pid)) and int(pid) != os.getpid():
                continue
            log.info("removing a half-built root filesystem %s", stale)
            kernel.remove_tree(stale)

    def _customize(self, root: Path) -> None:
        """What makes a bare Debian tree behave like a Debian AMI for Packer and Ansible."""
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        add_user(root, DEFAULT_USER)
        (root / "etc/hostname").write_text(f"{DEFAULT_HOSTNAME}\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{DEFAULT_HOSTNAME}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        )
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()  # one per session instead: no two images share a host key
        cfg = root / "etc/cloud/cloud.cfg.d"
        cfg.mkdir(parents=True, exist_ok=True)
        (cfg / "90-baker-local.cfg").write_text(CLOUD_CFG)
