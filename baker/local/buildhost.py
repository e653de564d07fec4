"""The local cloud's build host: what Packer SSHes into instead of an EC2 instance.

A minimal Debian root filesystem (mmdebstrap, from this machine's own apt sources) is built once
and cached. Every bake gets a fresh overlay over it and an sshd started *inside* that chroot on a
free loopback port, so no bake sees another's changes and the host's own packages are never
touched. What provisioning wrote (the overlay's upper dir) becomes the content of the new AMI, so
later stages can boot an instance of exactly that image.

Where the root filesystem is fetched. mmdebstrap needs the apt mirror, but the local cloud lives in
a loopback-only network namespace. The cloud builds the root filesystem when it comes up, *before*
it enters the namespace (``ensure_rootfs()`` then runs in the host's network). A process already
inside the namespace (the test run) may name a network namespace file with access to the apt
sources (``fetch_netns``, or ``$BAKER_FETCH_NETNS``; the tests use the one pytest was started
from): then mmdebstrap alone runs through ``nsenter --net=FILE``. Not ``/proc/1/ns/net``: PID 1 may
belong to a sandbox that denies it (as on the machine this was written on), and guessing whose network to
borrow is not the build host's call. mmdebstrap fetches only from the machine's configured apt
sources; everything else the build host starts (sshd, provisioning, the app) runs in the caller's
namespace.

An instance is more than a chroot where that is cheap: sshd and the app get a UTS and IPC
namespace of their own (provisioning that sets a hostname renames the instance, not this machine),
their own PTYs (devpts) and /dev/shm, and /run is a tmpfs. The session's host key and the
client's public key live on that /run (sshd's ``AuthorizedKeysFile`` points there) rather than in
``~admin/.ssh``, so an image never carries a build session's keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baker import envfile, runner
from baker.errors import BakerError, ToolError, UsageError

log = logging.getLogger("baker")

#: what the image needs beyond minbase: Ansible's remote side (python3, python3-apt), the SSH
#: server, sudo for become, and what package maintainer scripts call (adduser, deb-systemd-helper,
#: an offline ``systemctl enable`` in a chroot without a running systemd).
ROOTFS_PACKAGES = (
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
CUSTOMIZE_VERSION = 2
#: the instance's hostname (a UTS namespace of its own), resolvable through the image's /etc/hosts
DEFAULT_HOSTNAME = "baker-build"
#: package scripts must start no services in the build host
POLICY_RC_D = "#!/bin/sh\n# baker build host: package scripts start no services here\nexit 101\n"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: per-session SSH material lives on the chroot's /run (tmpfs), so it never lands in an image
RUN_SSH = "run/baker-ssh"
SSHD_START_TIMEOUT = 30.0


class BuildHostError(BakerError):
    """The build host could not do what was asked (sshd did not come up, a mount stuck)."""

    exit_code = 3


@dataclass(frozen=True)
class BuildSession:
    """Where Packer (or verify) connects: an sshd inside one overlay."""

    id: str
    host: str
    port: int
    user: str
    private_key_file: Path
    #: the chroot's merged root as seen from the host
    root: Path
    #: "build" (a bake's overlay over the root filesystem) or "instance" (a boot of an image)
    kind: str = "build"
    ami_id: str | None = None
    pid: int = 0
    #: the sshd's public host key ("ssh-ed25519 AAAA..."), so a client can verify what it reached
    host_key: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["private_key_file"] = str(self.private_key_file)
        d["root"] = str(self.root)
        return d


# ---- pure helpers (argv builders, parsers) -------------------------------------------------------


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


def in_instance(root: Path, hostname: str, argv: list[str]) -> list[str]:
    """Run ``argv`` in the chroot with a UTS and IPC namespace of its own.

    The hostname is the image's own (/etc/hostname, which its /etc/hosts resolves, so sudo does not
    complain), and provisioning that sets a hostname changes the instance's, never this machine's.
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}", hostname):
        hostname = DEFAULT_HOSTNAME
    return ["unshare", "--uts", "--ipc", "--", "chroot", str(root),
            "/bin/sh", "-c", 'hostname "$1" && shift && exec "$@"', "sh", hostname, *argv]  # fmt: skip


def sshd_argv(root: Path, port: int, user: str, hostname: str = "") -> list[str]:
    """sshd from inside the chroot, on loopback only, keys only, host key and authorized keys on /run."""
    return in_instance(root, hostname or DEFAULT_HOSTNAME, [
        "/usr/sbin/sshd", "-D", "-e",
        "-p", str(port),
        "-h", f"/{RUN_SSH}/ssh_host_ed25519_key",
        "-o", "ListenAddress=127.0.0.1",
        "-o", f"AuthorizedKeysFile=/{RUN_SSH}/authorized_keys/%u",
        "-o", f"AllowUsers={user}",
        "-o", "PasswordAuthentication=no",
        "-o", "KbdInteractiveAuthentication=no",
        "-o", "PermitRootLogin=no",
        # PAM in a chroot wants loginuid and systemd-logind; keys need neither.
        "-o", "UsePAM=no",
        "-o", "UseDNS=no",
        "-o", "X11Forwarding=no",
    ])  # fmt: skip


def overlay_options(lowers: list[Path], upper: Path, work: Path) -> str:
    for p in (*lowers, upper, work):
        if any(c in str(p) for c in ":,\\"):
            raise UsageError(f"path {p} contains ':', ',' or '\\', which overlayfs options cannot carry")
    return f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={upper},workdir={work}"


def instance_mounts(merged: Path, overlay: str) -> list[list[str]]:
    """The mounts that make an overlay a running system, in order.

    /dev is the host's (a plain bind, so the device nodes are real), but PTYs and shared memory
    are the instance's own: a new devpts instance with its ptmx, and a tmpfs on /dev/shm. /run
    is a tmpfs, so nothing on it (sshd's keys, PID files) ends up in an image.
    """
    m = str(merged)
    return [
        ["mount", "-t", "overlay", "overlay", "-o", overlay, m],
        ["mount", "-t", "proc", "proc", f"{m}/proc"],
        ["mount", "--bind", "/dev", f"{m}/dev"],
        ["mount", "--make-private", f"{m}/dev"],
        ["mount", "-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620,gid=5", "devpts", f"{m}/dev/pts"],
        ["mount", "--bind", f"{m}/dev/pts/ptmx", f"{m}/dev/ptmx"],
        ["mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", f"{m}/dev/shm"],
        ["mount", "-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", f"{m}/run"],
    ]


def parse_unit(text: str) -> dict[str, list[str]]:
    """The [Service] section of a systemd unit as key -> values (later values appended)."""
    section = ""
    out: dict[str, list[str]] = {}
    joined = re.sub(r"\\\n", " ", text)
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (baker/envfile.py mirrors its parser)."""
    return envfile.parse(text)


def expand_exec(command: str, env: dict[str, str]) -> list[str]:
    """ExecStart= as argv: prefixes dropped, ``$VAR`` words split, ``${VAR}`` substituted."""
    command = command.lstrip("-@+!:")
    argv: list[str] = []
    for word in shlex.split(command):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if m:
            argv += env.get(m.group(1), "").split()
            continue
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda g: env.get(g.group(1), ""), word))
    return argv


# ---- mounts and processes ------------------------------------------------------------------------


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts_under(base: Path) -> list[str]:
    """Mount points at or below ``base``, in mount order (read from /proc/self/mountinfo)."""
    prefix = str(base).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def unmount_under(base: Path) -> list[str]:
    """Unmount everything at or below ``base``, newest first; lazily when a mount is busy."""
    done: list[str] = []
    for _ in range(500):
        points = mounts_under(base)
        if not points:
            return done
        target = points[-1]
        res = runner.run(["umount", target], stage="buildhost", check=False, echo=False, capture=True)
        if res.returncode != 0:
            runner.run(["umount", "-l", target], stage="buildhost", check=False, echo=False, capture=True)
        done.append(target)
    raise BuildHostError(f"could not unmount everything under {base}: {', '.join(mounts_under(base))}")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def processes_rooted_in(base: Path) -> list[int]:
    """PIDs whose root directory is at or below ``base``: only what runs in our chroots."""
    prefix = str(base).rstrip("/")
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            root = os.readlink(entry / "root")
        except OSError:
            continue
        if (root == prefix or root.startswith(prefix + "/")) and _alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def _end(pids: list[int], grace: float = 5.0) -> list[int]:
    """SIGTERM, wait, SIGKILL what is left. Only ever called with PIDs of our own chroots."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids


def _remove_tree(path: Path) -> None:
    """Delete a directory we made, never crossing into a mount (a leftover /dev bind, say)."""
    if not path.exists():
        return
    unmount_under(path)
    if mounts_under(path):
        raise BuildHostError(f"refusing to delete {path}: something is still mounted below it")
    runner.run(["rm", "-rf", "--one-file-system", str(path)], stage="buildhost", echo=False, capture=True)


def _tree_size(path: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + dirnames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _in_loopback_only_netns() -> bool:
    """Whether this process's network namespace has nothing but ``lo`` (then no mirror is reachable)."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    names = [line.split(":")[0].strip() for line in lines if ":" in line]
    return all(n == "lo" for n in names)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the build host ------------------------------------------------------------------------------


class BuildHost:
    """Root filesystem cache, build sessions, committed images and booted instances.

    State (sessions, images) lives under ``state_dir``; the root filesystem under ``cache_dir`` so it
    survives ``local down``. Every sshd's PID is recorded in its session's ``session.json`` so
    ``down()`` from another process (or after a crash) ends exactly those.
    """

    def __init__(self, state_dir: Path, cache_dir: Path, *, fetch_netns: str | Path | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.cache_dir = Path(cache_dir).resolve()
        self.root = self.state_dir / "buildhost"
        self.sessions_dir = self.root / "sessions"
        self.images_dir = self.state_dir / "images"
        self.rootfs_dir = self.cache_dir / "rootfs"
        netns_file = fetch_netns or os.environ.get("BAKER_FETCH_NETNS") or None
        self.fetch_netns = str(netns_file) if netns_file else None
        #: our own children (sshd, apps), reaped when they end; PIDs are in session.json as well
        self._procs: dict[str, list[Any]] = {}
        self._committed: dict[str, str] = {}

    # -- root filesystem --

    def recipe(self) -> dict:
        arch = runner.output(["dpkg", "--print-architecture"], stage="buildhost").strip()
        return rootfs_recipe(host_suite(), arch, host_apt_sources())

    def rootfs_path(self) -> Path:
        return self.rootfs_dir / recipe_key(self.recipe())

    def ensure_rootfs(self) -> Path:
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
            if _in_loopback_only_netns():
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
                _remove_tree(tmp)
                raise
            seconds = round(time.monotonic() - started, 1)
            os.rename(tmp, final)
            manifest: dict[str, Any] = {
                "key": key,
                "recipe": recipe,
                "built_at": _now(),
                "build_seconds": seconds,
                "size_bytes": _tree_size(final),
            }
            (self.rootfs_dir / f"{key}.json").write_text(json.dumps(manifest, indent=2) + "\n")
            log.info("root filesystem ready in %.0fs (%d MB)", seconds, manifest["size_bytes"] // 2**20)
            return final

    def _clean_stale_builds(self) -> None:
        for stale in self.rootfs_dir.glob(".*.tmp-*"):
            pid = stale.name.rpartition("-")[2]
            if pid.isdigit() and _alive(int(pid)) and int(pid) != os.getpid():
                continue
            log.info("removing a half-built root filesystem %s", stale)
            _remove_tree(stale)

    def _customize(self, root: Path) -> None:
        """What makes a bare Debian tree behave like a Debian AMI for Packer and Ansible."""
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        self._add_user(root, DEFAULT_USER)
        (root / "etc/hostname").write_text(f"{DEFAULT_HOSTNAME}\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{DEFAULT_HOSTNAME}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
        )
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()  # one per session instead: no two images share a host key

    @staticmethod
    def _add_user(root: Path, user: str) -> None:
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

    # -- sessions --

    @contextlib.contextmanager
    def session(self, *, ssh_user: str = DEFAULT_USER, keep: bool = True) -> Iterator[BuildSession]:
        """A fresh overlay over the root filesystem with an sshd inside; for one bake.

        On exit sshd stops and everything is unmounted; the upper dir (what provisioning wrote) stays
        for ``commit()`` unless ``keep`` is false or the bake failed (nothing will commit it then).
        """
        rootfs = self.ensure_rootfs()
        with self._instance([rootfs], kind="build", ssh_user=ssh_user, ami_id=None, keep=keep) as sess:
            yield sess

    @contextlib.contextmanager
    def boot(self, ami_id: str, *, ssh_user: str = DEFAULT_USER) -> Iterator[BuildSession]:
        """An instance of exactly that image: its content over the root filesystem it was baked on."""
        content = self.image_root(ami_id)
        if content is None:
            raise UsageError(
                f"the local build host holds no image content for {ami_id}", details={"ami_id": ami_id}
            )
        meta = json.loads((content.parent / "image.json").read_text())
        rootfs = Path(meta["rootfs"])
        if not rootfs.is_dir():
            raise BuildHostError(
                f"{ami_id} was baked on root filesystem {rootfs}, which is gone from the cache"
            )
        lowers = [content, rootfs]
        with self._instance(lowers, kind="instance", ssh_user=ssh_user, ami_id=ami_id, keep=False) as sess:
            yield sess

    @contextlib.contextmanager
    def _instance(
        self, lowers: list[Path], *, kind: str, ssh_user: str, ami_id: str | None, keep: bool
    ) -> Iterator[BuildSession]:
        sid = f"{kind}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        sdir = self.sessions_dir / sid
        done = False
        try:
            yield self._start(sid, sdir, lowers, kind=kind, ssh_user=ssh_user, ami_id=ami_id)
            done = True
        finally:
            self._stop(sid)
            if not (done and keep):
                _remove_tree(sdir)

    def _start(
        self, sid: str, sdir: Path, lowers: list[Path], *, kind: str, ssh_user: str, ami_id: str | None
    ) -> BuildSession:
        started = time.monotonic()
        upper, work, merged = sdir / "upper", sdir / "work", sdir / "merged"
        for d in (upper, work, merged):
            d.mkdir(parents=True)
        sdir.chmod(0o700)
        meta: dict[str, Any] = {
            "id": sid,
            "kind": kind,
            "ami_id": ami_id,
            "user": ssh_user,
            "lowers": [str(p) for p in lowers],
            "rootfs": str(lowers[-1]),
            "started_at": _now(),
            "pids": [],
        }
        self._write_meta(sdir, meta)
        for argv in instance_mounts(merged, overlay_options(lowers, upper, work)):
            runner.output(argv, stage="buildhost")
        (merged / "run/sshd").mkdir(mode=0o755)
        if ssh_user != DEFAULT_USER:
            self._add_user(merged, ssh_user)

        ssh = merged / RUN_SSH
        (ssh / "authorized_keys").mkdir(parents=True, mode=0o755)
        runner.output(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"baker-buildhost-{sid}",
                "-f",
                str(ssh / "ssh_host_ed25519_key"),
            ],
            stage="buildhost",
        )
        client_key = sdir / "client_key"
        runner.output(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"baker-{sid}", "-f", str(client_key)],
            stage="buildhost",
        )
        authorized = ssh / "authorized_keys" / ssh_user
        authorized.write_text((sdir / "client_key.pub").read_text())
        authorized.chmod(0o644)

        port = self._start_sshd(sid, sdir, merged, ssh_user, meta)
        log.info("build host %s: sshd on 127.0.0.1:%d (%.1fs)", sid, port, time.monotonic() - started)
        return BuildSession(
            id=sid,
            host="127.0.0.1",
            port=port,
            user=ssh_user,
            private_key_file=client_key,
            root=merged,
            kind=kind,
            ami_id=ami_id,
            pid=meta["pid"],
            host_key=(ssh / "ssh_host_ed25519_key.pub").read_text().strip(),
        )

    def _start_sshd(self, sid: str, sdir: Path, merged: Path, user: str, meta: dict) -> int:
        env = {"PATH": CHROOT_PATH, "LANG": "C.UTF-8"}
        last = ""
        for _attempt in range(5):
            port = _free_port()
            argv = sshd_argv(merged, port, user, _read_hostname(merged))
            proc = runner.start(argv, env=env, log_file=sdir / "sshd.log")
            self._procs.setdefault(sid, []).append(proc)
            meta.update(pid=proc.pid, port=port)
            meta["pids"].append(proc.pid)
            self._write_meta(sdir, meta)
            deadline = time.monotonic() + SSHD_START_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None:
                if _ssh_banner(port):
                    return port
                time.sleep(0.05)
            if proc.poll() is None:
                _end([proc.pid])
            _reap(proc)
            last = (sdir / "sshd.log").read_text(errors="replace")
            if "Address already in use" not in last:
                break
        raise ToolError(
            "the build host's sshd did not come up", tool="sshd", output_tail=last.strip().splitlines()[-20:]
        )

    def _stop(self, sid: str) -> dict:
        """End every process in the session's chroot and unmount it; keep its upper dir."""
        sdir = self.sessions_dir / sid
        stopped = processes_rooted_in(sdir)
        meta = self._read_meta(sdir)
        for pid in meta.get("pids", []):
            if pid not in stopped and _alive(pid) and _rooted_in(pid, sdir):
                stopped.append(pid)
        _end(stopped)
        for proc in self._procs.pop(sid, []):
            _reap(proc)
        unmounted = unmount_under(sdir)
        if meta:
            meta["pids"] = []
            meta["stopped_at"] = _now()
            self._write_meta(sdir, meta)
        return {"stopped": stopped, "unmounted": unmounted}

    def discard(self, session: BuildSession) -> None:
        """Throw a session's changes away (a failed bake, a booted instance)."""
        self._stop(session.id)
        _remove_tree(self.sessions_dir / session.id)

    # -- images --

    def commit(self, session: BuildSession, ami_id: str) -> Path:
        """Keep what provisioning wrote as the content of ``ami_id``; returns that content's path.

        Stops the session first if it still runs. Committing the same session again (the AMI Packer
        copied to another region) gives the new id the first image's content.
        """
        first = self._committed.get(session.id)
        if first is not None:
            return self.copy_image(first, ami_id)
        dest = self._new_image_dir(ami_id)
        sdir = self.sessions_dir / session.id
        self._stop(session.id)
        smeta = self._read_meta(sdir)
        if session.kind != "build" or not (sdir / "upper").is_dir():
            raise UsageError(f"build host session {session.id} has nothing to commit")
        tmp = self._tmp_image_dir(ami_id)
        os.rename(sdir / "upper", tmp / "root")
        meta = {"session": session.id, "rootfs": smeta.get("rootfs") or str(self.rootfs_path())}
        self._finish_image(tmp, dest, meta)
        self._committed[session.id] = ami_id
        _remove_tree(sdir)
        log.info("build host: %s holds the content of %s", dest / "root", ami_id)
        return dest / "root"

    def copy_image(self, source_ami_id: str, ami_id: str) -> Path:
        """The same content under another AMI id (CopyImage to a region or an account; promote).

        Hard links: images are never written to (instances get an overlay of their own).
        """
        source = self.image_root(source_ami_id)
        if source is None:
            raise UsageError(f"the local build host holds no image content for {source_ami_id}")
        dest = self._new_image_dir(ami_id)
        tmp = self._tmp_image_dir(ami_id)
        runner.output(["cp", "-a", "--link", str(source), str(tmp / "root")], stage="buildhost")
        meta = json.loads((source.parent / "image.json").read_text())
        meta["copy_of"] = source_ami_id
        self._finish_image(tmp, dest, meta)
        return dest / "root"

    def _new_image_dir(self, ami_id: str) -> Path:
        _check_ami_id(ami_id)
        dest = self.images_dir / ami_id
        if dest.exists():
            raise UsageError(f"the local build host already holds image content for {ami_id}")
        return dest

    def _tmp_image_dir(self, ami_id: str) -> Path:
        self.images_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.images_dir / f".{ami_id}.tmp-{os.getpid()}"
        _remove_tree(tmp)
        tmp.mkdir()
        return tmp

    @staticmethod
    def _finish_image(tmp: Path, dest: Path, meta: dict[str, Any]) -> None:
        meta.update(ami_id=dest.name, committed_at=_now())
        (tmp / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.rename(tmp, dest)

    def image_root(self, ami_id: str) -> Path | None:
        """What provisioning wrote for that AMI (an overlay upper dir), or None when unknown here."""
        _check_ami_id(ami_id)
        root = self.images_dir / ami_id / "root"
        return root if root.is_dir() else None

    def start_service(self, session: BuildSession, unit: str, *, env: dict[str, str] | None = None) -> int:
        """Run a unit's ExecStart in the chroot the way systemd would configure it (no systemd here).

        Reads User=, Group=, WorkingDirectory=, Environment= and EnvironmentFile=; ``env`` overrides
        (a port, say). The environment goes through the process environment, never argv. Returns the
        PID; the process ends with the session.
        """
        root = session.root
        text = None
        for base in ("etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"):
            candidate = root / base / unit
            if candidate.is_file():
                text = candidate.read_text()
                break
        if text is None:
            raise UsageError(f"no systemd unit {unit} in {session.ami_id or session.id}")
        service = parse_unit(text)
        environ = {"PATH": CHROOT_PATH, "LANG": "C.UTF-8"}
        for line in service.get("Environment", []):
            for word in shlex.split(line):
                key, _, value = word.partition("=")
                environ[key] = value
        for spec in service.get("EnvironmentFile", []):
            optional = spec.startswith("-")
            path = root / spec.lstrip("-").lstrip("/")
            if path.is_file():
                environ.update(parse_env_file(path.read_text()))
            elif not optional:
                raise UsageError(f"{unit}: EnvironmentFile {spec} is missing in the image")
        environ.update(env or {})
        exec_start = [v for v in service.get("ExecStart", []) if v]
        if not exec_start:
            raise UsageError(f"{unit} has no ExecStart")
        user = (service.get("User") or ["root"])[-1]
        group = (service.get("Group") or [""])[-1]
        workdir = (service.get("WorkingDirectory") or ["/"])[-1].lstrip("-")
        spec = f"{user}:{group}" if group else user
        # the instance's hostname (the sshd's UTS namespace), then the chroot as the unit's user
        argv = [
            "nsenter", f"--target={session.pid}", "--uts", "--ipc", "--",
            "chroot", f"--userspec={spec}", str(root),
            "/usr/bin/env", f"--chdir={workdir}", *expand_exec(exec_start[-1], environ),
        ]  # fmt: skip
        sdir = self.sessions_dir / session.id
        proc = runner.start(argv, env=environ, log_file=sdir / f"{unit}.log")
        self._procs.setdefault(session.id, []).append(proc)
        meta = self._read_meta(sdir)
        meta.setdefault("pids", []).append(proc.pid)
        self._write_meta(sdir, meta)
        return proc.pid

    # -- whole host --

    def down(self) -> dict:
        """End every sshd and app this build host started, unmount everything, drop sessions.

        Works from another process and after a crash (PIDs from session.json, mounts from
        /proc/self/mountinfo, processes by their root directory); idempotent. Images stay.
        """
        stopped: list[int] = []
        unmounted: list[str] = []
        removed: list[str] = []
        if self.sessions_dir.is_dir():
            for sdir in sorted(self.sessions_dir.iterdir()):
                if not sdir.is_dir():
                    continue
                res = self._stop(sdir.name)
                stopped += res["stopped"]
                unmounted += res["unmounted"]
                _remove_tree(sdir)
                removed.append(sdir.name)
        stopped += _end(processes_rooted_in(self.root))
        unmounted += unmount_under(self.root)
        for proc_list in self._procs.values():
            for proc in proc_list:
                _reap(proc)
        self._procs.clear()
        return {"stopped": stopped, "unmounted": unmounted, "sessions_removed": removed}

    def status(self) -> dict:
        rootfs: dict = {"path": None, "built": False}
        with contextlib.suppress(BakerError, OSError):
            path = self.rootfs_path()
            rootfs = {"path": str(path), "built": path.is_dir()}
            manifest = path.parent / f"{path.name}.json"
            if manifest.is_file():
                m = json.loads(manifest.read_text())
                rootfs.update(
                    size_bytes=m.get("size_bytes"),
                    built_at=m.get("built_at"),
                    build_seconds=m.get("build_seconds"),
                )
        images = []
        if self.images_dir.is_dir():
            for d in sorted(self.images_dir.iterdir()):
                if d.name.startswith(".") or not (d / "image.json").is_file():
                    continue
                meta = json.loads((d / "image.json").read_text())
                images.append(
                    {
                        "ami_id": d.name,
                        "path": str(d / "root"),
                        "size_bytes": _tree_size(d / "root"),
                        "committed_at": meta.get("committed_at"),
                    }
                )
        sessions = []
        if self.sessions_dir.is_dir():
            for sdir in sorted(self.sessions_dir.iterdir()):
                meta = self._read_meta(sdir)
                if not meta:
                    continue
                running = bool(meta.get("pid")) and _alive(meta["pid"]) and _rooted_in(meta["pid"], sdir)
                sessions.append(
                    {
                        "id": meta["id"],
                        "kind": meta["kind"],
                        "ami_id": meta.get("ami_id"),
                        "user": meta.get("user"),
                        "port": meta.get("port"),
                        "pid": meta.get("pid"),
                        "running": running,
                    }
                )
        return {"rootfs": rootfs, "images": images, "sessions": sessions}

    # -- bookkeeping --

    @staticmethod
    def _write_meta(sdir: Path, meta: dict) -> None:
        tmp = sdir / "session.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, sdir / "session.json")

    @staticmethod
    def _read_meta(sdir: Path) -> dict:
        try:
            return json.loads((sdir / "session.json").read_text())
        except (OSError, ValueError):
            return {}


def _read_hostname(root: Path) -> str:
    try:
        return (root / "etc/hostname").read_text().strip()
    except OSError:
        return DEFAULT_HOSTNAME


def _check_ami_id(ami_id: str) -> None:
    if not re.fullmatch(r"ami-[0-9a-zA-Z]{1,32}", ami_id):
        raise UsageError(f"not an AMI id: {ami_id!r}")


def _rooted_in(pid: int, base: Path) -> bool:
    try:
        root = os.readlink(f"/proc/{pid}/root")
    except OSError:
        return False
    return root == str(base) or root.startswith(str(base) + "/")


def _reap(proc: Any, timeout: float = 5.0) -> None:
    """Collect an ended child of ours so it does not linger as a zombie."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def _ssh_banner(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(64).startswith(b"SSH-")
    except OSError:
        return False
