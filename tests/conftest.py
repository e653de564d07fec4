"""Test-run wide setup.

The whole pytest process moves into a private, loopback-only network namespace before any test
(and before any thread) starts: whatever a test starts (emulator, sshd, Packer, Terraform) inherits
it, so nothing can reach the emulator's fake instance addresses. Without root the integration
and end-to-end levels skip with a message saying so.

Under pytest-xdist (``make test`` runs ``-n``) every worker is a pytest process of its own: it makes
its own namespace and its own local cloud (session fixtures are per process), and finds the
namespace that reaches the apt sources through $BAKER_FETCH_NETNS, which the controller sets
to an open descriptor of the namespace it was started in before it leaves it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.localcloud import (  # noqa: F401  (shared by every level)
    LocalCloud,
    debian_rootfs,
    local_cloud,
)

REPO = Path(__file__).resolve().parent.parent
NETNS = f"baker-test-{os.getpid()}"
_isolation_error: str | None = None
_launch_netns_fd: int | None = None  # kept open for the run: workers reach it through /proc
_pycache: str | None = None  # the run's bytecode cache, made and removed by its first pytest process


def bytecode_cache() -> None:
    """The hundreds of short Python processes a run starts (``baker`` commands, the vault client,
    credential_process) read baker's modules as bytecode from one cache for the run instead of
    compiling them at every start, as an installed baker does: a checkout run under
    PYTHONDONTWRITEBYTECODE (this machine sets it) has no bytecode of its own, ~0.4 s of CPU each."""
    global _pycache
    if "PYTHONPYCACHEPREFIX" in os.environ:  # the caller's choice, or the controller's for a worker
        return
    _pycache = tempfile.mkdtemp(prefix="baker-tests-pycache-")
    os.environ["PYTHONPYCACHEPREFIX"] = _pycache
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def pytest_configure(config: pytest.Config) -> None:
    global _isolation_error
    bytecode_cache()
    if os.geteuid() != 0:
        _isolation_error = "needs root to create a loopback-only network namespace"
        return
    if not shutil.which("ip"):
        _isolation_error = "needs iproute2 ('ip') for the network namespace"
        return
    from baker.local import netns
    from tests.localcloud import launcher_netns

    global _launch_netns_fd
    if "PYTEST_XDIST_WORKER" not in os.environ and "BAKER_FETCH_NETNS" not in os.environ:
        # the run's first pytest process: remember the namespace that reaches the apt sources
        fetch = launcher_netns()
        if fetch is None:
            _launch_netns_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
            fetch = f"/proc/{os.getpid()}/fd/{_launch_netns_fd}"
        os.environ["BAKER_FETCH_NETNS"] = fetch
    netns.create(NETNS)
    netns.enter(NETNS)
    os.environ["BAKER_TEST_NETNS"] = NETNS


def pytest_unconfigure(config: pytest.Config) -> None:
    if _pycache is not None:
        shutil.rmtree(_pycache, ignore_errors=True)
    if _isolation_error is None and os.geteuid() == 0:
        from baker.local import netns

        netns.delete(NETNS)


def isolation_error() -> str | None:
    """Why this run is not inside a private network namespace (None when it is)."""
    return _isolation_error


def need_tools(*tools: str) -> None:
    """Skip the calling test with a message naming what the machine lacks."""
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.skip(f"missing on this machine: {', '.join(missing)}")


@pytest.fixture(scope="session")
def isolated() -> str:
    """The name of the run's loopback-only namespace; skips when there is none."""
    if _isolation_error:
        pytest.skip(_isolation_error)
    return NETNS


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def copy_project(dest: Path, *parts: str) -> Path:
    """This repository's project (baker.yml and the named folders) copied to ``dest``, to change freely."""
    shutil.copy(REPO / "baker.yml", dest / "baker.yml")
    for name in parts:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".terraform"))
    return dest


def git(root: Path, *args: str) -> str:
    """git in ``root`` with a test identity; its stdout."""
    ident = ["-c", "user.name=baker-tests", "-c", "user.email=tests@example.com"]
    done = subprocess.run(["git", "-C", str(root), *ident, *args], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def commit_all(root: Path) -> None:
    """Make ``root`` a git repository of its own with everything committed (its version stays put)."""
    (root / ".gitignore").write_text(".baker/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "app")


#: the files that take minutes (Terraform load balancers, live fleets, whole CLI stories): what
#: each took of one worker in a full run on this machine (2 cores, 5 workers), in seconds. Every
#: other file takes seconds. Only the order matters, so figures a third off do no harm.
HEAVY = {
    "tests/integration/test_deploy.py": 710,
    "tests/e2e/test_release_story.py": 620,
    "tests/integration/test_faults_more.py": 380,
    "tests/e2e/test_bluegreen_story.py": 560,
    "tests/integration/test_faults.py": 445,
    "tests/integration/test_bluegreen.py": 360,
    "tests/integration/test_bake.py": 285,
    "tests/integration/test_live_instances.py": 160,
    "tests/integration/test_live_story.py": 60,
    "tests/unit/test_terraform.py": 55,
    "tests/integration/test_moto_ext.py": 55,
    "tests/integration/test_local_cloud.py": 45,
}
#: a worker whose files still have more than this left gets a light file as its look-ahead
LOOKAHEAD_SECONDS = 30.0
LIGHT_SECONDS = 5.0


def file_seconds(path: str) -> float:
    return float(HEAVY.get(path, LIGHT_SECONDS))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "numprocesses", None):
        return

    def weight(item: pytest.Item) -> float:
        return -file_seconds(Path(str(item.path)).resolve().relative_to(REPO).as_posix())

    items.sort(key=weight)  # stable: file order and test order within a file stay as written


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, the longest files first, each worker's look-ahead a light file.

    xdist's worker holds a file's last test back until it knows what runs next, so the scheduler
    hands a worker its next file while the current one still runs (a one-test file at once). Given
    in file order, a heavy file would then wait behind a story of five minutes while another
    worker runs out of work, and the run ends with one worker alone on it. Here a worker with more
    than ``LOOKAHEAD_SECONDS`` left gets the lightest file left; one about to finish gets the
    heaviest: the longest-processing-time-first rule."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class HeaviestFirst(LoadFileScheduling):  # type: ignore[misc]
        def _left(self, node: Any) -> float:
            left = 0.0
            for scope, unit in self.assigned_work.get(node, {}).items():
                pending = sum(1 for done in unit.values() if not done)
                left += file_seconds(scope) * pending / max(len(unit), 1)
            return left

        def _assign_work_unit(self, node: Any) -> None:
            if self._left(node) > LOOKAHEAD_SECONDS:
                lightest = min(self.workqueue, key=file_seconds)
                self.workqueue.move_to_end(lightest, last=False)
            else:
                heaviest = max(self.workqueue, key=file_seconds)
                self.workqueue.move_to_end(heaviest, last=False)
            super()._assign_work_unit(node)

    return HeaviestFirst(config, log)
