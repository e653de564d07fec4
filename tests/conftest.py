"""Test-run wide setup.

The whole pytest process moves into a private, loopback-only network namespace before any test
(and before any thread) starts: whatever a test starts (emulator, sshd, Packer, Terraform) inherits
it, so nothing can reach the emulator's fake instance addresses. Without root the integration
and end-to-end levels skip with a message saying so.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.localcloud import LocalCloud, local_cloud  # noqa: F401  (shared by integration and e2e)

REPO = Path(__file__).resolve().parent.parent
NETNS = f"baker-test-{os.getpid()}"
_isolation_error: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _isolation_error
    if os.geteuid() != 0:
        _isolation_error = "needs root to create a loopback-only network namespace"
        return
    if not shutil.which("ip"):
        _isolation_error = "needs iproute2 ('ip') for the network namespace"
        return
    from baker.local import netns

    netns.create(NETNS)
    netns.enter(NETNS)
    os.environ["BAKER_TEST_NETNS"] = NETNS


def pytest_unconfigure(config: pytest.Config) -> None:
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
