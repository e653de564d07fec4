"""The one way baker runs a program. The only module that imports subprocess.

Lines are streamed as they come (stderr merged into stdout through one pipe, so nothing can
deadlock), prefixed with the stage, and the last lines are kept for the error message.
The environment is never logged.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from baker.errors import Interrupted, ToolError, UsageError

log = logging.getLogger("baker")

#: what to install when a program is missing
INSTALL_HINTS: dict[str, str] = {
    "dpkg-deb": "apt-get install dpkg",
    "packer": "apt-get install packer",
    "ansible-playbook": "pip install ansible-core",
    "terraform": "install Terraform >= 1.5 (or set terraform.binary: tofu in baker.yml)",
    "tofu": "install OpenTofu",
    "mmdebstrap": "apt-get install mmdebstrap",
    "sshd": "apt-get install openssh-server",
    "ip": "apt-get install iproute2",
    "git": "apt-get install git",
}


@dataclass
class Result:
    argv: list[str]
    returncode: int
    #: every output line (stdout and stderr merged) when capture=True, else the tail only
    lines: list[str] = field(default_factory=list)
    duration: float = 0.0

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def which(program: str) -> str:
    """Absolute path of ``program`` or a UsageError naming what to install."""
    found = shutil.which(program)
    if not found:
        hint = INSTALL_HINTS.get(program, f"install {program}")
        raise UsageError(f"{program} not found on PATH: {hint}", details={"missing": program})
    return found


def run(
    argv: Sequence[str],
    *,
    stage: str = "",
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = False,
    on_line: Callable[[str], None] | None = None,
    echo: bool = True,
    tail: int = 40,
    stdin_data: str | None = None,
    pass_fds: Sequence[int] = (),
    redact: Sequence[str] = (),
) -> Result:
    """Run ``argv`` (never through a shell) and stream its output.

    ``env`` replaces the environment when given (callers start from ``os.environ`` and add).
    ``redact`` lists strings that must never reach a log line or an error (secrets).
    SIGINT reaches the child through the shared process group; we wait for it, then raise
    Interrupted so that callers release what they hold.
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("empty argv")
    program = argv[0]
    if os.sep not in program:
        argv[0] = which(program)
    name = stage or Path(program).name
    keep: collections.deque[str] = collections.deque(maxlen=tail)
    everything: list[str] = []
    secrets = [s for s in redact if s]

    def clean(line: str) -> str:
        for s in secrets:
            line = line.replace(s, "***")
        return line

    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd) if cwd else None,
            env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError as exc:
        raise UsageError(f"cannot run {program}: {exc.strerror}: {INSTALL_HINTS.get(program, '')}") from exc

    if stdin_data is not None and proc.stdin is not None:

        def feed() -> None:
            assert proc.stdin is not None
            try:
                proc.stdin.write(stdin_data)
                proc.stdin.close()
            except BrokenPipeError:
                pass

        threading.Thread(target=feed, daemon=True).start()

    timer: threading.Timer | None = None
    timed_out = threading.Event()
    if timeout:

        def expire() -> None:
            timed_out.set()
            _terminate(proc)

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()

    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = clean(raw.rstrip("\n"))
            keep.append(line)
            if capture:
                everything.append(line)
            if on_line is not None:
                on_line(line)
            elif echo:
                log.info("[%s] %s", name, line)
        proc.wait()
    except KeyboardInterrupt:
        # The child got the same SIGINT (same process group); give it time to clean up.
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _terminate(proc)
        raise Interrupted(f"interrupted while {name} was running") from None
    finally:
        if timer is not None:
            timer.cancel()

    result = Result(
        argv=argv,
        returncode=proc.returncode,
        lines=everything if capture else list(keep),
        duration=time.monotonic() - started,
    )
    if timed_out.is_set():
        raise ToolError(
            f"{name} timed out after {timeout:.0f}s",
            tool=name,
            output_tail=list(keep),
            returncode=proc.returncode,
        )
    if check and proc.returncode != 0:
        raise ToolError(
            f"{name} failed with exit code {proc.returncode}",
            tool=name,
            output_tail=list(keep),
            returncode=proc.returncode,
        )
    return result


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def output(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60,
    check: bool = True,
    stage: str = "",
) -> str:
    """Run a short command and return its merged output, without echoing it."""
    return run(
        argv, cwd=cwd, env=env, timeout=timeout, check=check, capture=True, echo=False, stage=stage
    ).output


def start(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    log_file: str | Path | None = None,
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen:
    """Start a long-running daemon detached in its own session (the local cloud's services).

    Its output goes to ``log_file``; the caller records the PID and ends it by that PID.
    """
    argv = [str(a) for a in argv]
    if os.sep not in argv[0]:
        argv[0] = which(argv[0])
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            argv,
            cwd=str(cwd) if cwd else None,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
