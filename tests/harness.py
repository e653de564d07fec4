"""What every level shares to drive baker and to wait on what it started.

    Baker      ``baker`` as a user runs it: a child process, one JSON object on stdout
    cli        ``baker`` in this process (``baker.cli.main``): the exit code and the JSON result
    wait_for   poll a check until it holds; its deadline only bounds a broken emulator
    FakeTime  a stand-in for time (``baker.clock.Clock``) that moves only when a test moves it

Tests read the clock they inject, never the real one: no test waits for time to pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from baker.clock import Clock


def _argv(project: Path, args: tuple[str, ...], local: bool) -> list[str]:
    return ["--project", str(project), "--output", "json", *(["--local"] if local else []), *args]


class Baker:
    """``baker --project P --output json [--local] ARGS`` as a child process (``python -m baker``,
    so the tree under test is the one imported)."""

    def __init__(self, project: Path, *, local: bool = True, env: Mapping[str, str] | None = None) -> None:
        self.project = project
        self.local = local
        self.env = {**os.environ, **(env or {})}

    def argv(self, *args: str, local: bool | None = None) -> list[str]:
        local = self.local if local is None else local
        return [sys.executable, "-m", "baker", *_argv(self.project, args, local)]

    def __call__(
        self, *args: str, local: bool | None = None, timeout: float = 900
    ) -> tuple[int, dict[str, Any], str]:
        """Run to the end: the exit code, the one JSON object it printed, what it said on stderr.
        ``local``: this once with (or without) ``--local``, whatever the default."""
        proc = subprocess.run(
            self.argv(*args, local=local),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env,
        )
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, f"--output json prints exactly one JSON object, got:\n{proc.stdout}"
        return proc.returncode, json.loads(lines[0]), proc.stderr

    def start(self, *args: str) -> Running:
        """Start it and return at once; its stderr is collected as it comes."""
        return Running(self.argv(*args), self.env)


class Running:
    """A ``baker`` child process under way (see ``Baker.start``)."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.err: list[str] = []
        #: what it printed on stdout, once finished
        self.out = ""
        #: when it ended (time.monotonic() when its stderr closed), while the test did other things
        self.ended: float | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        self.err.extend(self.proc.stderr)  # type: ignore[arg-type]
        self.ended = time.monotonic()

    @property
    def said(self) -> str:
        return "".join(self.err)

    def until(self, ready: Callable[[], Any], timeout: float = 600) -> Any:
        """Poll ``ready`` until it holds; fails when baker ends first, saying what it said."""

        def check() -> Any:
            if self.proc.poll() is not None:
                raise AssertionError(f"baker ended (exit {self.proc.returncode}) first:\n{self.said[-4000:]}")
            return ready()

        return wait_for(lambda: f"{ready.__name__}; baker said:\n{self.said[-4000:]}", check, timeout, 0.1)

    def finish(self, timeout: float = 600) -> tuple[int, dict[str, Any]]:
        """Wait for the end: the exit code and the JSON object it printed (empty when none). Not
        ended by then: it is stopped (``stop``) and the wait fails."""
        try:
            self.out, _ = self.proc.communicate(timeout=timeout)
        finally:
            self.stop()
        self._reader.join(timeout=10)
        lines = self.out.strip().splitlines()
        return self.proc.returncode, json.loads(lines[-1]) if lines else {}

    def stop(self) -> None:
        """A test that failed halfway: end this baker and what it started, each by its PID."""
        if self.proc.poll() is None:
            from baker.local import kernel

            for pid, _ in reversed(kernel.descendants(self.proc.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()


def cli(
    capsys: pytest.CaptureFixture[str], project: Path, *args: str, local: bool = True
) -> tuple[int, dict]:
    """``baker --output json ARGS`` in this process: the exit code and the JSON result it printed."""
    from baker.cli import main

    capsys.readouterr()  # what came before is not this command's
    code = main(_argv(project, args, local))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines, f"baker {' '.join(args)} printed no result (exit {code})"
    return code, json.loads(lines[-1])


def wait_for(
    what: str | Callable[[], str], check: Callable[[], Any], deadline: float = 90, pause: float = 0.3
) -> Any:
    """Poll until ``check`` returns something truthy and return it. The deadline only bounds a
    broken emulator or a run that went wrong: the tests assert states, never how long they took.
    ``what`` names what was awaited in the failure (a callable: worded when it fails)."""
    end = time.monotonic() + deadline
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what() if callable(what) else what}")
        time.sleep(pause)


class FakeTime:
    """A stand-in for time: monotonic and wall readings that move only by ``advance`` or by what
    the code under test sleeps (which returns at once). ``clock`` is the ``baker.clock.Clock``
    to inject; ``slept`` lists every sleep asked for."""

    def __init__(self, wall: float | None = None) -> None:
        self.now = 1000.0
        #: now, in whole seconds: what a lease's whole seconds are counted from
        self.epoch = float(int(time.time())) if wall is None else wall
        self.slept: list[float] = []

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.epoch += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)

    @property
    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.now, sleep=self.sleep, wall=lambda: self.epoch)
