"""The local cloud's build host: what Packer SSHes into instead of an EC2 instance.

A minimal Debian root filesystem (mmdebstrap, from this machine's own apt sources) is built once
and cached. Every bake gets a fresh overlay over it and an sshd started *inside* that chroot on a
free loopback port, so no bake sees another's changes and the host's own packages are never
touched. What provisioning wrote (the overlay's upper dir) becomes the content of the new AMI, so
later stages can boot an instance of exactly that image. The root filesystem cache is
baker.local.rootfs, the committed images baker.local.images, running a unit without systemd
baker.local.systemd.

An instance is more than a chroot where that is cheap: sshd and the app get a UTS and IPC
namespace of their own (provisioning that sets a hostname renames the instance, not this machine),
their own PTYs (devpts) and /dev/shm, and /run is a tmpfs. The session's host key and the
client's public key live on that /run (sshd's ``AuthorizedKeysFile`` points there) rather than in
``~admin/.ssh``, so an image never carries a build session's keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from baker import runner
from baker.errors import BakerError, ToolError, UsageError
from baker.local import kernel
from baker.local.disks import make_disk
from baker.local.images import DISK, ImageStore, check_ami_id
from baker.local.rootfs import DEFAULT_HOSTNAME, DEFAULT_USER, RootFS, add_user, now
from baker.local.systemd import CHROOT_PATH, service_command

log = logging.getLogger("baker")

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


# ---- mounts and processes (one copy, in kernel.py) ------------------------------------------------

mounts_under = kernel.mounts_under
processes_rooted_in = kernel.processes_rooted_in
_alive = kernel.alive
_end = kernel.end
_rooted_in = kernel.rooted_in


def unmount_under(base: Path) -> list[str]:
    return kernel.unmount_under(base, stage="buildhost")


def _remove_tree(path: Path) -> None:
    kernel.remove_tree(path, stage="buildhost")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        self.rootfs = RootFS(self.cache_dir, fetch_netns=fetch_netns)
        self.rootfs_dir = self.rootfs.rootfs_dir
        self.fetch_netns = self.rootfs.fetch_netns
        self.images = ImageStore(self.images_dir)
        #: our own children (sshd, apps), reaped when they end; PIDs are in session.json as well
        self._procs: dict[str, list[Any]] = {}
        self._committed: dict[str, str] = {}

    # -- root filesystem (baker.local.rootfs) --

    def recipe(self) -> dict:
        return self.rootfs.recipe()

    def rootfs_path(self) -> Path:
        return self.rootfs.path()

    def ensure_rootfs(self) -> Path:
        """The cached root filesystem, built on first use."""
        return self.rootfs.ensure()

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
            "started_at": now(),
            "pids": [],
        }
        self._write_meta(sdir, meta)
        for argv in instance_mounts(merged, kernel.overlay_options(lowers, upper, work)):
            runner.output(argv, stage="buildhost")
        (merged / "run/sshd").mkdir(mode=0o755)
        if ssh_user != DEFAULT_USER:
            add_user(merged, ssh_user)

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
            meta["stopped_at"] = now()
            self._write_meta(sdir, meta)
        return {"stopped": stopped, "unmounted": unmounted}

    def discard(self, session: BuildSession) -> None:
        """Throw a session's changes away (a failed bake, a booted instance)."""
        self._stop(session.id)
        _remove_tree(self.sessions_dir / session.id)

    # -- images (baker.local.images) --

    def commit(self, session: BuildSession, ami_id: str) -> Path:
        """Keep what provisioning wrote as the content of ``ami_id``; returns that content's path.

        Stops the session first if it still runs. Committing the same session again (the AMI Packer
        copied to another region) gives the new id the first image's content.
        """
        first = self._committed.get(session.id)
        if first is not None:
            return self.copy_image(first, ami_id)
        check_ami_id(ami_id)
        sdir = self.sessions_dir / session.id
        self._stop(session.id)
        smeta = self._read_meta(sdir)
        if session.kind != "build" or not (sdir / "upper").is_dir():
            raise UsageError(f"build host session {session.id} has nothing to commit")
        meta = {"session": session.id, "rootfs": smeta.get("rootfs") or str(self.rootfs_path())}
        root = self.images.add(ami_id, sdir / "upper", meta)
        self._committed[session.id] = ami_id
        _remove_tree(sdir)
        self._write_disk(ami_id, [root, Path(meta["rootfs"])])
        log.info("build host: %s holds the content of %s", root, ami_id)
        return root

    def _write_disk(self, ami_id: str, lowers: list[Path]) -> None:
        """The image's root volume (``disk.img``): what the merged tree of the bake holds, seen through
        a read-only overlay of the session's upper dir over its root filesystem."""
        view = self.root / "disk-views" / ami_id
        view.mkdir(parents=True, exist_ok=True)
        try:
            options = "ro," + kernel.overlay_options(lowers, view, view).partition(",upperdir=")[0]
            runner.output(["mount", "-t", "overlay", "overlay", "-o", options, str(view)], stage="buildhost")
            seconds = make_disk(view, self.images_dir / ami_id / DISK)
            log.info("build host: the root volume of %s made in %.1fs", ami_id, seconds)
        finally:
            unmount_under(view)
            view.rmdir()

    def copy_image(self, source_ami_id: str, ami_id: str) -> Path:
        """The same content under another AMI id (CopyImage to a region or an account; promote)."""
        return self.images.copy(source_ami_id, ami_id)

    def image_root(self, ami_id: str) -> Path | None:
        """What provisioning wrote for that AMI (an overlay upper dir), or None when unknown here."""
        return self.images.root(ami_id)

    def start_service(self, session: BuildSession, unit: str, *, env: dict[str, str] | None = None) -> int:
        """Run a unit's ExecStart in the session's chroot as systemd would (baker.local.systemd).

        Returns the PID; the process ends with the session.
        """
        argv, environ = service_command(session.root, unit, uts_of=session.pid, env=env)
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
        images = self.images.list()
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
