"""Faults: baker killed with SIGKILL at every phase of a deploy, and what the next run makes of it.

A `baker --local deploy` child process is killed outright (no handler runs, the lock stays, the
release stays in_progress) before init, during plan, during apply, during the health wait and
during a rollback. Each time `baker unlock -e ENV --force` breaks the dead run's lock and closes
what it left as abandoned, saying what is live, and the next deploy succeeds. The environment
(`faults`) has its own Terraform state and fleet; AMIs are registered in the emulator directly.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker.ledger import Ledger, lock_for
from baker.local import kernel
from tests.conftest import copy_project, need_tools
from tests.harness import Baker
from tests.localcloud import register_ami

pytestmark = pytest.mark.integration

ENV = "faults"
NAME = "hello-web-faults"


def terraforms_in(root: Path) -> list[int]:
    """PIDs of Terraform processes working in ``root``'s build folder (started by a baker we killed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"terraform") and any(str(root).encode() in a for a in argv):
            found.append(int(entry.name))
    return found


class Env:
    def __init__(self, cloud: Any, root: Path) -> None:
        self.cloud, self.root = cloud, root
        self.baker = Baker(root)
        self.aws = cloud.aws("us-east-1")
        self.ledger = Ledger(self.aws, table="baker-state", app="hello-web", env=ENV)
        self.n = 0

    def ami(self, label: str) -> str:
        return register_ami(self.aws, f"9.9.{self.next()}-{label}")

    def next(self) -> int:
        self.n += 1
        return self.n

    def run(self, *args: str) -> tuple[int, dict[str, Any]]:
        return self.baker.start(*args).finish()

    def kill_when(self, args: list[str], ready: Callable[[subprocess.Popen, str], bool]) -> str:
        """Start baker, SIGKILL it (itself only: what it started goes on, as after a real kill)
        once ``ready(proc, stderr so far)``; returns what it had said."""
        running = self.baker.start(*args)
        try:
            running.until(lambda: ready(running.proc, running.said), timeout=300)
            running.proc.send_signal(signal.SIGKILL)
            running.proc.wait(timeout=30)
            return running.said
        finally:
            if running.proc.poll() is None:
                running.proc.kill()
                running.proc.wait()

    def lock_holder(self) -> dict[str, Any] | None:
        return lock_for(self.aws, table="baker-state", app="hello-web", env=ENV, lease_seconds=60).holder()

    def wait_for_orphans(self) -> None:
        """A Terraform that baker started goes on after baker is killed (it finishes its apply
        and releases its state lock): wait for it, as an operator would see it end."""
        for _ in range(1500):
            if not terraforms_in(self.root):
                return
            time.sleep(0.2)
        raise AssertionError(f"a Terraform in {self.root} is still running after 5 minutes")


@pytest.fixture(scope="module")
def env(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Env:
    need_tools("terraform")
    root = copy_project(tmp_path_factory.mktemp("faults-project"), "environments", "terraform")
    (root / "environments" / f"{ENV}.yml").write_text(
        yaml.safe_dump(
            {
                "deploy": {
                    "backend": {"bucket": "baker-tfstate-123456789012", "key": f"hello-web/{ENV}.tfstate"},
                    "variables": {"name": NAME},
                    "unhealthy_timeout": 4,
                },
            }
        )
    )
    e = Env(local_cloud, root)
    code, result = e.run("deploy", "-e", ENV, "--ami", e.ami("first"), "--timeout", "180")
    assert code == 0, result
    return e


def terraform_running(word: str) -> Callable[[subprocess.Popen, str], bool]:
    return lambda proc, said: any(
        any(part.endswith("terraform") for part in c[:1]) and word in c
        for _, c in kernel.descendants(proc.pid)
    )


PHASES: dict[str, Callable[[Env], Callable[[subprocess.Popen, str], bool]]] = {
    "before init": lambda e: lambda proc, said: bool(e.lock_holder()),
    "during plan": lambda e: terraform_running("plan"),
    "during apply": lambda e: terraform_running("apply"),
    "during the wait": lambda e: lambda proc, said: "waiting:" in said,
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_deploy_killed_at_any_phase_is_recoverable_and_the_ledger_tells_the_truth(env: Env, phase: str):
    before = {r.id for r in env.ledger.releases()}
    env.kill_when(["deploy", "-e", ENV, "--ami", env.ami(phase.replace(" ", "-"))], PHASES[phase](env))
    env.wait_for_orphans()
    assert env.lock_holder() is not None, "a killed run cannot release its lock"
    code, unlocked = env.run("unlock", "-e", ENV, "--force")
    assert code == 0 and unlocked["released"] is not None
    left = [r for r in env.ledger.releases() if r.id not in before]
    wrote_intent = phase in ("during apply", "during the wait")
    assert [r.outcome for r in left] == (["abandoned"] if wrote_intent else [])
    if wrote_intent:
        assert "live then:" in left[0].reason and [a["id"] for a in unlocked["abandoned"]] == [left[0].id]
    good = env.ami(f"after-{phase.replace(' ', '-')}")
    code, result = env.run("deploy", "-e", ENV, "--ami", good, "--timeout", "180")
    assert (code, result.get("outcome")) == (0, "healthy"), result
    assert env.ledger.live().ami_id == good


def rolling_back_and_waiting(proc: subprocess.Popen, said: str) -> bool:
    """The rollback's own rollout is under way: its health wait has begun."""
    _, rolling, after = said.partition(f"rolling {ENV} back to")
    return bool(rolling) and "waiting:" in after


def test_a_deploy_killed_during_its_rollback_is_recoverable(env: Env):
    good = env.ledger.live().ami_id
    bad = env.ami("broken")
    env.cloud.set_health(bad, "unhealthy")
    env.kill_when(["deploy", "-e", ENV, "--ami", bad, "--timeout", "180"], rolling_back_and_waiting)
    env.wait_for_orphans()
    code, unlocked = env.run("unlock", "-e", ENV, "--force")
    assert code == 0
    back, failed = env.ledger.releases(limit=2)
    assert (back.kind, back.outcome, back.ami_id) == ("rollback", "abandoned", good)
    assert (failed.ami_id, failed.outcome) == (bad, "failed")
    assert [a["id"] for a in unlocked["abandoned"]] == [back.id]
    code, result = env.run("deploy", "-e", ENV, "--ami", good, "--timeout", "180")
    assert (code, result.get("outcome")) == (0, "healthy"), result
