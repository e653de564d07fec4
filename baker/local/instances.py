"""Live instances: an EC2 instance of the emulator that boots its image in a container of its own.

An instance launched from an AMI whose root snapshot holds blocks (baker.local.blocks: a baked
image's disk, or a snapshot uploaded through the EBS direct APIs and registered) boots that disk:
its own copy of the snapshot (a hard link: snapshots are never written), whose ext4 root partition
is mounted read-only through a loop device (baker.local.disks), under an overlay for the instance's
writes, and ``systemd-nspawn --boot`` runs the image's own systemd in it, so the baked unit starts
as on EC2. ``--private-network``: the container has a network namespace of its own with only ``lo``
(the app listens on its port there, health checks and the load balancer enter that namespace to
reach it). ``--register=no --keep-unit``: this machine has no systemd as PID 1 to register with.

User data runs as on EC2: cloud-init from the image reads a NoCloud seed written into the overlay
before the first boot (``meta-data`` with the instance id, hostname and the key pair's public key;
``user-data`` as the instance was given it). The instance's SSH host key is the one cloud-init
generates on first boot; the local cloud reads it from the instance's disk (the overlay), which is
how a client here knows it without trusting the first connection.

An AMI whose root snapshot holds no blocks (registered by hand without one) stays a record, and so
does the Debian source image: its instances are Packer's build instances, whose work the build host
does.

State: ``instances/<id>/`` under the local cloud's state dir (``instance.json`` with the recorded
nspawn process, the root volume ``volume.img`` and its partition's mount ``image/``, the overlay's
upper/work/merged, the console log), so ``local down`` from another
process (or after a crash) ends exactly these containers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from baker import runner
from baker.errors import BakerError, UsageError
from baker.local import kernel
from baker.local.blocks import sparse_copy
from baker.local.disks import mount_argv
from baker.local.images import ImageStore
from baker.local.rootfs import RootFS

log = logging.getLogger("baker")

#: live instances per local cloud unless ``local up --max-instances`` says otherwise
DEFAULT_MAX_LIVE = 12
#: how long an instance's systemd may take to power off before its container is killed
SHUTDOWN_GRACE = 10.0
#: how long a stopping instance keeps running after it left its load balancers: a connection the
#: load balancer relayed to it just before finishes (AWS waits for the deregistration delay)
DRAIN_SECONDS = 1.0
NSPAWN = "systemd-nspawn"
#: seconds after which a live instance's targets are checked even without cloud-init's boot-finished
BOOT_WAIT = 20.0
#: an instance's root volume (its copy of the AMI's root snapshot) in its state dir
VOLUME = "volume.img"


class InstanceLimit(BakerError):
    """More live instances than the local cloud allows (``max_instances``)."""

    exit_code = 2


@dataclass(frozen=True)
class Image:
    """What an instance of one AMI boots: its root snapshot's blocks (a disk image)."""

    ami_id: str
    disk: Path


# ---- pure helpers (argv builders, seeds) ------------------------------------------------------


def nspawn_argv(instance_id: str, root: Path) -> list[str]:
    """The container of one instance: the image's systemd, only loopback, no registration."""
    return [
        NSPAWN,
        "--boot",
        "--register=no",
        "--keep-unit",
        "--private-network",
        "--link-journal=no",
        "--console=read-only",
        f"--machine={instance_id}",
        "-D",
        str(root),
    ]


def meta_data(instance_id: str, hostname: str, public_keys: list[str]) -> str:
    """NoCloud meta-data: what EC2's metadata service says about the instance."""
    data: dict[str, Any] = {"instance-id": instance_id, "local-hostname": hostname}
    if public_keys:
        data["public-keys"] = public_keys
    return yaml.safe_dump(data, sort_keys=False)


def hostname_for(private_ip: str | None, instance_id: str) -> str:
    """EC2's name for an instance (ip-10-0-0-5); only a name, nothing ever connects to that address."""
    if private_ip and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", private_ip):
        return "ip-" + private_ip.replace(".", "-")
    return instance_id


class Instances:
    """The containers of one local cloud (one per live instance), driven by the emulator."""

    def __init__(
        self, state_dir: Path, *, max_live: int = DEFAULT_MAX_LIVE, cache_dir: Path | None = None
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.cache_dir = cache_dir
        self.images_dir = self.state_dir / "images"
        self.store = ImageStore(self.images_dir)
        self.dir = self.state_dir / "instances"
        self.max_live = max_live
        self._lock = threading.RLock()
        self._procs: dict[str, Any] = {}
        self._stopping: dict[str, threading.Thread] = {}
        self._leaders: dict[str, int] = {}
        #: AMIs deregistered in the emulator whose content goes once no instance boots from it
        self._condemned: set[str] = set()

    # -- images --

    def baked_disk(self, ami_id: str) -> Path | None:
        """The root volume the build host made for an AMI it baked (or copied), if any."""
        try:
            return self.store.disk(ami_id)
        except UsageError:
            return None

    def source_disk(self) -> Path | None:
        """The Debian source image's root volume: the cached root filesystem as a disk."""
        return RootFS(self.cache_dir).disk() if self.cache_dir is not None else None

    def forget_image(self, ami_id: str) -> None:
        """The AMI was deregistered: its content goes now, or when its last instance is gone."""
        with self._lock:
            self._condemned.add(ami_id)
        self._collect_images()

    def _collect_images(self) -> None:
        with self._lock:
            in_use = {self._meta(i).get("ami_id") for i in self.ids()}
            for ami_id in sorted(self._condemned - in_use):
                self._condemned.discard(ami_id)
                if (self.images_dir / ami_id).is_dir():
                    log.info("image store: %s was deregistered; removing its content", ami_id)
                    self.store.remove(ami_id)

    # -- the fleet --

    def ids(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(d.name for d in self.dir.iterdir() if (d / "instance.json").is_file())

    def live(self) -> list[str]:
        """Instances whose container runs (or is booting)."""
        return [i for i in self.ids() if self.running(i)]

    def running(self, instance_id: str) -> bool:
        rec = self._meta(instance_id).get("nspawn")
        if not rec:
            return False
        return kernel.ours(rec)

    def check_room(self, count: int) -> None:
        """Refuse a launch that would run more containers than the local cloud allows."""
        live = len(self.live())
        if live + count > self.max_live:
            raise InstanceLimit(
                f"the local cloud runs {live} live instance(s) and allows {self.max_live}: launching "
                f"{count} more is refused (terminate some, or 'baker local up --max-instances N')"
            )

    def launch(
        self,
        instance_id: str,
        image: Image,
        *,
        user_data: bytes | None,
        hostname: str,
        public_keys: list[str],
    ) -> None:
        """First boot of a new instance: overlay, NoCloud seed, container."""
        d = self.dir / instance_id
        with self._lock:
            for sub in ("upper", "work", "merged"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
            meta = {
                "instance_id": instance_id,
                "ami_id": image.ami_id,
                "hostname": hostname,
                "launched_at": time.time(),
            }
            self._write_meta(instance_id, meta)
            try:
                _volume_from(image.disk, d / VOLUME)
                self._mount(instance_id)
                seed = d / "merged/var/lib/cloud/seed/nocloud"
                seed.mkdir(parents=True, exist_ok=True)
                (seed / "meta-data").write_text(meta_data(instance_id, hostname, public_keys))
                (seed / "user-data").write_bytes(user_data or b"")
                (seed / "user-data").chmod(0o600)
                self._spawn(instance_id)
            except BaseException:  # a failed boot leaves no mount, loop device or disk behind
                kernel.unmount_under(d)
                kernel.remove_tree(d)
                raise

    def start(self, instance_id: str) -> None:
        """Boot a stopped instance again: same disk (the overlay's upper dir), cloud-init does not rerun."""
        with self._lock:
            self._wait_stopped(instance_id)
            if not self._meta(instance_id) or self.running(instance_id):
                return
            self._mount(instance_id)
            self._spawn(instance_id)

    def stop(self, instance_id: str) -> None:
        """Power the container off (in the background); its disk stays."""
        self._shutdown(instance_id, remove=False)

    def terminate(self, instance_id: str) -> None:
        """Power off and throw the instance's disk away (in the background)."""
        self._shutdown(instance_id, remove=True)

    def netns_file(self, instance_id: str) -> str | None:
        """The network namespace of the instance's container (/proc/PID/ns/net of its systemd)."""
        pid = self.leader(instance_id)
        return f"/proc/{pid}/ns/net" if pid else None

    def leader(self, instance_id: str) -> int | None:
        """PID (on this machine) of the container's init: the child of nspawn in another namespace."""
        rec = self._meta(instance_id).get("nspawn")
        if not rec or not kernel.ours(rec):
            return None
        known = self._leaders.get(instance_id)
        if known and kernel.alive(known):
            return known
        own = _netns_inode(int(rec["pid"]))
        for child in kernel.children(int(rec["pid"])):
            inode = _netns_inode(child)
            if inode is not None and inode != own:
                self._leaders[instance_id] = child
                return child
        return None

    def booted(self, instance_id: str) -> bool:
        """Whether the instance's first boot is over: cloud-init's boot-finished, or BOOT_WAIT passed.

        Until then its targets stay ``initial`` without being checked: on EC2 the group registers an
        instance once it runs, and a check of a system still booting says nothing about the app.
        """
        meta = self._meta(instance_id)
        if not meta:
            return False
        marker = self.dir / instance_id / "upper/var/lib/cloud/instances" / instance_id / "boot-finished"
        return marker.is_file() or time.time() - float(meta.get("booted_at") or 0) > BOOT_WAIT

    def root(self, instance_id: str) -> Path:
        """The instance's disk as this machine sees it (the overlay's merged dir while it runs)."""
        return self.dir / instance_id / "merged"

    def host_key(self, instance_id: str) -> str | None:
        """The instance's SSH host key (ed25519, as cloud-init generated it), read from its disk."""
        path = self.dir / instance_id / "upper/etc/ssh/ssh_host_ed25519_key.pub"
        try:
            return " ".join(path.read_text().split()[:2]) or None
        except OSError:
            return None

    def console(self, instance_id: str) -> str:
        try:
            return (self.dir / instance_id / "console.log").read_text(errors="replace")
        except OSError:
            return ""

    def describe(self, instance_id: str) -> dict[str, Any]:
        meta = self._meta(instance_id)
        leader = self.leader(instance_id)
        out: dict[str, Any] = {"live": self.running(instance_id), "container_pid": leader}
        if meta.get("booted_at"):
            out["uptime_seconds"] = round(time.time() - meta["booted_at"], 1)
        if leader:
            out["rss_mib"] = round(_tree_rss_kib(leader) / 1024, 1)
        return out

    def down(self) -> dict[str, Any]:
        """Power off every container, unmount, drop the instances' disks. Idempotent, after a crash too."""
        ids = self.ids()
        with self._lock:
            recs = [(i, self._meta(i).get("nspawn")) for i in ids]
            for _, rec in recs:
                if rec and kernel.ours(rec):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(rec["pid"]), signal.SIGTERM)
        stopped = []
        for instance_id, rec in recs:
            if rec and kernel.stop(rec, grace=SHUTDOWN_GRACE):
                stopped.append(instance_id)
            self._reap(instance_id)
        for thread in list(self._stopping.values()):
            thread.join(SHUTDOWN_GRACE + 5)
        # containers that outlived their nspawn (killed after its grace, or by a crash of ours)
        killed = kernel.kill_containers(self.dir)
        if killed:
            log.warning("ended %d container(s) that outlived their systemd-nspawn: %s", len(killed), killed)
        unmounted = kernel.unmount_under(self.dir) if self.dir.exists() else []
        kernel.remove_tree(self.dir)
        return {"stopped": stopped, "unmounted": unmounted}

    # -- inside --

    def _mount(self, instance_id: str) -> None:
        """The root volume's partition read-only (a loop device), the overlay for writes over it."""
        d = self.dir / instance_id
        if kernel.mounts_under(d / "merged"):
            return
        if not kernel.mounts_under(self.dir):
            # the instances' disks are mounted below a shared mount: a container started while
            # another instance's disk is mounted holds a copy of that mount (systemd-nspawn copies
            # the whole tree), and only a shared mount's copies go when it is unmounted here
            kernel.make_shared(self.dir)
        options = kernel.overlay_options([d / "image"], d / "upper", d / "work")
        (d / "image").mkdir(exist_ok=True)
        if not kernel.mounts_under(d / "image"):
            runner.output(mount_argv(d / VOLUME, d / "image"), stage="instances")
        runner.output(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(d / "merged")], stage="instances"
        )

    def _spawn(self, instance_id: str) -> None:
        d = self.dir / instance_id
        argv = nspawn_argv(instance_id, d / "merged")
        proc = runner.start(argv, env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
                            log_file=d / "console.log")  # fmt: skip
        self._procs[instance_id] = proc
        rec = kernel.record(proc.pid)
        for _ in range(100):  # until the exec shows
            if rec["cmdline"] and Path(rec["cmdline"][0]).name == NSPAWN:
                break
            time.sleep(0.01)
            rec = kernel.record(proc.pid)
        meta = self._meta(instance_id)
        meta.update(nspawn=rec, booted_at=time.time())
        self._write_meta(instance_id, meta)
        self._leaders.pop(instance_id, None)
        log.info("instance %s: booting %s in a container (pid %d)", instance_id, meta["ami_id"], proc.pid)

    def _shutdown(self, instance_id: str, *, remove: bool) -> None:
        with self._lock:
            meta = self._meta(instance_id)
            if not meta:
                return
            rec = meta.get("nspawn")
            previous = self._stopping.get(instance_id)

            def work() -> None:
                if previous is not None:
                    previous.join()
                time.sleep(DRAIN_SECONDS)
                if rec:
                    kernel.stop(rec, grace=SHUTDOWN_GRACE)  # SIGTERM: nspawn powers the container off
                # a container whose nspawn had to be killed runs on without it: end it too
                kernel.kill_containers(self.dir / instance_id)
                self._reap(instance_id)
                with self._lock:
                    if self._stopping.get(instance_id) is not threading.current_thread():
                        return  # started again meanwhile
                    kernel.unmount_under(self.dir / instance_id)
                    if remove:
                        kernel.remove_tree(self.dir / instance_id)
                    self._stopping.pop(instance_id, None)
                if remove:
                    self._collect_images()

            thread = threading.Thread(target=work, name=f"stop-{instance_id}", daemon=True)
            self._stopping[instance_id] = thread
            thread.start()

    def _wait_stopped(self, instance_id: str) -> None:
        thread = self._stopping.get(instance_id)
        if thread is not None:
            self._lock.release()
            try:
                thread.join(SHUTDOWN_GRACE + 5)
            finally:
                self._lock.acquire()

    def _reap(self, instance_id: str) -> None:
        proc = self._procs.pop(instance_id, None)
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(timeout=1)

    def _meta(self, instance_id: str) -> dict[str, Any]:
        try:
            return json.loads((self.dir / instance_id / "instance.json").read_text())
        except (OSError, ValueError):
            return {}

    def _write_meta(self, instance_id: str, meta: dict[str, Any]) -> None:
        d = self.dir / instance_id
        tmp = d / "instance.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, d / "instance.json")


def _volume_from(disk: Path, volume: Path) -> None:
    """The instance's root volume from its AMI's snapshot: a hard link (neither is ever written, and
    the volume outlives a deleted snapshot, as an EBS volume does), else a sparse copy."""
    try:
        os.link(disk, volume)
    except OSError:
        sparse_copy(disk, volume)


def _netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _tree_rss_kib(pid: int) -> int:
    """RSS of a process and all its descendants (a container's whole userspace)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += kernel.rss_kib(p) or 0
        todo += kernel.children(p)
    return total


class LocalReach:
    """How ``baker verify`` reaches a live instance: its host key from its disk, SSH inside its netns.

    The socket is made by a thread that entered the instance's network namespace and connected to
    127.0.0.1:22 there; paramiko runs its SSH transport over it. No port is forwarded anywhere.
    """

    def __init__(self, state_dir: Path) -> None:
        self.instances = Instances(state_dir)

    def _live(self, instance_id: str) -> None:
        if not self.instances._meta(instance_id):
            raise BakerError(
                f"{instance_id} is only a record: its AMI was not baked in this local cloud, so nothing "
                "boots to verify (bake it here first)",
            )

    def host_keys(self, instance: dict[str, Any]) -> list[str] | None:
        self._live(instance["InstanceId"])
        key = self.instances.host_key(instance["InstanceId"])
        return [key] if key else None

    def connect(self, instance: dict[str, Any], port: int, timeout: float) -> socket.socket:
        netns_file = self.instances.netns_file(instance["InstanceId"])
        if netns_file is None:
            raise ConnectionRefusedError(f"{instance['InstanceId']} is not running")
        return kernel.in_netns(
            netns_file, lambda: socket.create_connection(("127.0.0.1", port), timeout=timeout), name="ssh"
        )


def sweep(state_dir: Path) -> dict[str, Any]:
    """What ``local down`` does after the emulator is gone: end leftover containers, drop their disks."""
    return Instances(state_dir).down()
