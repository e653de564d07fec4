"""What the local cloud asks of the kernel: /proc, mounts, signals to our own processes, setns.

One copy of each, for the facade (cloud.py), the build host and the live instances. Every process
this ends is one the local cloud started: a recorded PID whose start time and command line still
match (``ours``), or a PID found by where it runs (its root directory, in a tree of ours).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from baker import runner
from baker.errors import BakerError, UsageError

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


class MountError(BakerError):
    """Something of ours stays mounted (a busy mount), so its directory cannot go."""

    exit_code = 3


# --------------------------------------------------------------------------- /proc


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, comes first)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    fields = proc_stat(pid)
    return fields[19] if fields else None  # field 22: start time in clock ticks since boot


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def alive(pid: int) -> bool:
    """Whether the PID runs (a zombie does not)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of a process (all its threads')."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def descendants(pid: int) -> list[tuple[int, list[str]]]:
    """(pid, command line) of every descendant of a process, parents before their children."""
    found: list[tuple[int, list[str]]] = []
    todo = [pid]
    while todo:
        for child in children(todo.pop(0)):
            todo.append(child)
            argv = cmdline(child)
            if argv is not None:
                found.append((child, argv))
    return found


def rooted_in(pid: int, base: Path) -> bool:
    try:
        root = os.readlink(f"/proc/{pid}/root")
    except OSError:
        return False
    return root == str(base) or root.startswith(str(base) + "/")


def processes_rooted_in(base: Path) -> list[int]:
    """PIDs whose root directory is at or below ``base``: only what runs in our chroots."""
    prefix = str(base).rstrip("/")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and rooted_in(int(entry.name), Path(prefix)) and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def container_inits(base: Path) -> list[int]:
    """PIDs (here) of the init of every container whose root is an overlay over a directory at or
    below ``base``: the containers of our instances, found also when their systemd-nspawn is gone.

    A container's root, seen from here, is "/" (it was moved there in the container's own mount
    namespace), so it is found by its mount instead: its root mount's ``lowerdir``."""
    prefix = "lowerdir=" + str(base).rstrip("/")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
            if len(nspid) < 2 or nspid[-1] != "1":
                continue  # not the first process of a PID namespace of its own
            with open(entry / "mountinfo") as f:
                for line in f:
                    fields = line.split()
                    if fields[4] != "/" or "overlay" not in fields:
                        continue
                    options = fields[-1].split(",")
                    if any(o == prefix or o.startswith((prefix + "/", prefix + ":")) for o in options):
                        found.append(int(entry.name))
                        break
        except (OSError, IndexError):
            continue
    return found


def kill_containers(base: Path, timeout: float = 10.0) -> list[int]:
    """SIGKILL the init of every container of ours at or below ``base`` (``container_inits``): the
    whole container goes with it (its PID namespace ends). A container outlives its systemd-nspawn
    when that was killed, and keeps a copy of every mount it started with, so a disk unmounted here
    would stay in use (its loop device bound) for as long as the container ran."""
    pids = container_inits(base)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pids, timeout)
    return pids


def make_shared(path: Path, stage: str = "local") -> None:
    """``path`` a mount point of its own (a bind mount on itself) with shared propagation. Mounts
    made below it are shared too, so their copies in the mount namespaces of containers started
    later (systemd-nspawn makes those copies slaves) go when they are unmounted here, instead of
    keeping a disk in use for as long as such a container runs. Call it while nothing is mounted
    below ``path``: a bind on top would hide those mounts."""
    point = str(path).rstrip("/")
    if point not in mounts_under(path):
        runner.output(["mount", "--bind", point, point], stage=stage)
    runner.output(["mount", "--make-shared", point], stage=stage)


def net_interfaces() -> list[str]:
    """Network interfaces of this thread's namespace (/proc/thread-self/net follows setns)."""
    lines = Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


# --------------------------------------------------------------------------- processes we started


def record(pid: int) -> dict[str, Any]:
    """What identifies a process of ours later, also from another process: PID, start time, argv."""
    return {"pid": pid, "start_time": start_time(pid), "cmdline": cmdline(pid)}


def ours(rec: dict[str, Any]) -> bool:
    """Whether the recorded process still runs and is the very one we started (not a reused PID)."""
    pid = int(rec.get("pid") or 0)
    if pid <= 0:
        return False
    started = start_time(pid)
    if started is None or started != rec.get("start_time"):
        return False
    argv = cmdline(pid)
    return bool(argv) and argv == rec.get("cmdline")


def exited(rec: dict[str, Any]) -> bool:
    """Whether the recorded process has finished exiting: gone, a zombie, or its PID reused.

    A process on its way out loses its command line before it stops running, so an empty
    command line alone does not mean it is over.
    """
    fields = proc_stat(int(rec["pid"]))
    return fields is None or fields[19] != rec.get("start_time") or fields[0] in ("Z", "X")


def reap(pid: int) -> None:
    """Collect a child of ours (when this process started it) so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop(rec: dict[str, Any], grace: float = 10.0) -> bool:
    """End one recorded process by its PID (TERM, then KILL); False when it was not running."""
    if not ours(rec):
        return False
    pid = int(rec["pid"])
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap(pid)
        if exited(rec):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        reap(pid)
        if exited(rec):
            break
        time.sleep(0.05)
    return True


def _wait_gone(pids: list[int], timeout: float) -> None:
    """Until none of ``pids`` runs (reaping those that are our children), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        for pid in pids:
            reap(pid)
        time.sleep(0.05)


def end(pids: list[int], grace: float = 5.0) -> list[int]:
    """SIGTERM, wait, SIGKILL what is left. Only ever called with PIDs of our own."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    _wait_gone(pids, grace)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return pids


# --------------------------------------------------------------------------- mounts


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


def unmount_under(base: Path, stage: str = "local") -> list[str]:
    """Unmount everything at or below ``base``, newest first; lazily when a mount is busy."""
    done: list[str] = []
    for _ in range(500):
        points = mounts_under(base)
        if not points:
            return done
        target = points[-1]
        res = runner.run(["umount", target], stage=stage, check=False, echo=False, capture=True)
        if res.returncode != 0:
            runner.run(["umount", "-l", target], stage=stage, check=False, echo=False, capture=True)
        done.append(target)
    raise MountError(f"could not unmount everything under {base}: {', '.join(mounts_under(base))}")


def remove_tree(path: Path, stage: str = "local") -> None:
    """Delete a directory we made, never crossing into a mount (a leftover /dev bind, say)."""
    if not path.exists():
        return
    unmount_under(path, stage)
    if mounts_under(path):
        raise MountError(f"refusing to delete {path}: something is still mounted below it")
    runner.run(["rm", "-rf", "--one-file-system", str(path)], stage=stage, echo=False, capture=True)


# --------------------------------------------------------------------------- network namespaces


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def setns_net(ns_file: str | Path) -> None:
    """Move the calling thread into the network namespace of ``ns_file`` (/run/netns/X, /proc/P/ns/net)."""
    fd = os.open(ns_file, os.O_RDONLY)
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            raise UsageError(f"cannot enter network namespace {ns_file}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def same_netns(ns_file: str | Path) -> bool:
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino == os.stat(ns_file).st_ino
    except FileNotFoundError:
        return False


def in_netns(ns_file: str | Path, fn: Callable[[], T], *, name: str = "in-netns") -> T:
    """Run ``fn`` with its sockets inside the namespace, without moving this process there.

    setns(2) moves only the calling thread, so a short-lived thread enters and does the work.
    """
    if same_netns(ns_file):
        return fn()
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            setns_net(ns_file)
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def overlay_options(lowers: list[Path], upper: Path, work: Path) -> str:
    """``mount -t overlay`` options over ``lowers`` (top first), writing into ``upper``."""
    for p in (*lowers, upper, work):
        if any(c in str(p) for c in ":,\\"):
            raise UsageError(f"path {p} contains ':', ',' or '\\', which overlayfs options cannot carry")
    return f"lowerdir={':'.join(str(p) for p in lowers)},upperdir={upper},workdir={work}"
