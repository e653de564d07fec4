"""The one way baker runs a program. The only module that imports subprocess.

Lines are streamed as they come (stderr merged into stdout through one pipe, so nothing can
deadlock), prefixed with the stage, and the last lines are kept for the error message.
The environment is never logged.

Every child's environment is built by ``child_env``: what the caller gave (or baker's own
environment), minus what is withheld. ``withhold(names, values)`` withholds, for the length of a
``with`` block, the variables that hold secrets baker read (the one ``bake.vault_password: {env:
NAME}`` names) and any variable whose value is one of those secrets: no dpkg-deb, packer,
ansible-playbook, ssh, sftp or terraform that baker starts inherits them.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
class Withheld:
    """What no child may inherit: variable names, and variables holding any of the values."""

    names: frozenset[str] = frozenset()
    values: frozenset[str] = frozenset()


MIN_WITHHELD_VALUE = 6
_withheld: list[Withheld] = []
_withheld_lock = threading.Lock()


@contextlib.contextmanager
def withhold(names: Iterable[str] = (), values: Iterable[str] = ()) -> Iterator[Withheld]:
    """For the length of the block, children of this process (in any thread) do not inherit the
    variables ``names``, nor any variable whose value is one of ``values`` (values of at least
    MIN_WITHHELD_VALUE characters: a one-character secret must not take CHECKPOINT_DISABLE=1 along)."""
    kept = frozenset(v for v in values if len(v) >= MIN_WITHHELD_VALUE)
    entry = Withheld(frozenset(n for n in names if n), kept)
    with _withheld_lock:
        _withheld.append(entry)
    try:
        yield entry
    finally:
        with _withheld_lock:
            _withheld.remove(entry)


def withheld() -> Withheld:
    """Everything withheld right now (all active ``withhold`` blocks together)."""
    with _withheld_lock:
        return Withheld(
            frozenset().union(*(w.names for w in _withheld)),
            frozenset().union(*(w.values for w in _withheld)),
        )


def child_env(env: Mapping[str, str] | None, withheld: Withheld) -> dict[str, str]:
    """The environment a child gets: ``env`` (or this process's), without what is withheld."""
    base = os.environ if env is None else env
    return {k: v for k, v in base.items() if k not in withheld.names and v not in withheld.values}


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
    output_file: str | Path | None = None,
) -> Result:
    """Run ``argv`` (never through a shell) and stream its output.

    ``env`` replaces the environment when given (callers start from ``os.environ`` and add).
    ``redact`` lists strings that must never reach a log line or an error (secrets).
    SIGINT reaches the child through the shared process group; we wait for it, then raise
    Interrupted so that callers release what they hold.

    ``output_file``: the child writes into that file (which is followed as it grows) instead of
    a pipe, so it outlives a baker that is killed outright: a Terraform apply then finishes and
    releases its state lock instead of dying on a broken pipe halfway.
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
    sink = open(output_file, "wb") if output_file is not None else None  # noqa: SIM115 - closed below
    try:
        proc = subprocess.Popen(
            argv,
            cwd=str(cwd) if cwd else None,
            env=child_env(env, withheld()),
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=sink if sink is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError as exc:
        raise UsageError(f"cannot run {program}: {exc.strerror}: {INSTALL_HINTS.get(program, '')}") from exc
    finally:
        if sink is not None:
            sink.close()  # the child has its own copy

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
        lines = _follow(proc, Path(output_file)) if output_file is not None else proc.stdout
        assert lines is not None
        for raw in lines:
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


def _follow(proc: subprocess.Popen, path: Path) -> Iterator[str]:
    """The lines of a file a running child writes, as they come, until it has exited."""
    with path.open(errors="replace") as fh:
        partial = ""
        while True:
            chunk = fh.readline()
            if chunk:
                partial += chunk
                if partial.endswith("\n"):
                    yield partial
                    partial = ""
                continue
            if proc.poll() is not None:
                rest = fh.read()
                if rest or partial:
                    yield from (partial + rest).splitlines(keepends=True)
                return
            time.sleep(0.05)


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
            env=child_env(env, withheld()),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
