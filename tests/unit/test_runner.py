"""runner: the one way baker runs a program."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from baker import runner
from baker.errors import ToolError, UsageError

PY = sys.executable


def test_streams_lines_in_order_with_stderr_merged():
    seen: list[str] = []
    code = (
        "import sys\nfor i in range(3):\n"
        "    print(i, flush=True)\n    print('e', i, file=sys.stderr, flush=True)"
    )
    result = runner.run([PY, "-c", code], on_line=seen.append, capture=True)
    assert seen == ["0", "e 0", "1", "e 1", "2", "e 2"]
    assert result.lines == seen and result.returncode == 0


def test_failure_carries_the_tools_own_last_lines():
    code = (
        "import sys\nfor i in range(100): print('line', i)\n"
        "print('fatal: it broke', file=sys.stderr); sys.exit(7)"
    )
    with pytest.raises(ToolError) as exc:
        runner.run([PY, "-c", code], stage="thing", echo=False, tail=5)
    err = exc.value
    assert err.exit_code == 3 and err.returncode == 7
    assert err.output_tail[-1] == "fatal: it broke" and len(err.output_tail) == 5
    assert "fatal: it broke" in err.message and "exit code 7" in err.message


def test_large_output_on_both_pipes_does_not_deadlock():
    code = "import sys\nsys.stdout.write('o' * 300000)\nsys.stderr.write('e' * 300000)"
    result = runner.run([PY, "-c", code], echo=False, capture=True, timeout=30)
    assert sum(len(line) for line in result.lines) == 600000


def test_missing_program_names_what_to_install():
    with pytest.raises(UsageError, match="packer-that-does-not-exist not found on PATH"):
        runner.run(["packer-that-does-not-exist", "version"])


def test_timeout_ends_the_program():
    started = time.monotonic()
    with pytest.raises(ToolError, match="timed out"):
        runner.run([PY, "-c", "import time; time.sleep(30)"], timeout=0.5, echo=False)
    assert time.monotonic() - started < 15


def test_secrets_are_redacted_from_lines_and_errors():
    code = "import sys; print('token=hunter2'); sys.exit(1)"
    seen: list[str] = []
    with pytest.raises(ToolError) as exc:
        runner.run([PY, "-c", code], on_line=seen.append, redact=["hunter2"])
    assert seen == ["token=***"]
    assert "hunter2" not in exc.value.message


def test_arguments_are_never_interpreted_by_a_shell(tmp_path):
    marker = tmp_path / "pwned"
    out = runner.output(["echo", f"; touch {marker}"])
    assert out == f"; touch {marker}" and not marker.exists()


def test_stdin_data_reaches_the_program():
    result = runner.run(
        [PY, "-c", "import sys; print(sys.stdin.read().upper())"], stdin_data="abc", capture=True, echo=False
    )
    assert result.lines == ["ABC"]


def test_output_to_a_file_streams_lines_and_outlives_a_killed_parent(tmp_path):
    seen: list[str] = []
    result = runner.run(
        ["sh", "-c", "echo one; sleep 0.2; printf 'two\\nthree'"],
        output_file=tmp_path / "out.log",
        on_line=seen.append,
    )
    assert seen == ["one", "two", "three"] and result.returncode == 0
    # a parent killed outright (SIGKILL: no handler runs) leaves its child to finish
    marker = tmp_path / "finished"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from baker import runner; "
            "runner.run(['sh', '-c', 'echo started; sleep 1; echo yes > ' + sys.argv[1]], "
            "output_file=sys.argv[2])",
            str(marker),
            str(tmp_path / "child.log"),
        ]
    )
    for _ in range(100):
        if (tmp_path / "child.log").exists() and "started" in (tmp_path / "child.log").read_text():
            break
        time.sleep(0.05)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(60):
        if marker.exists():
            break
        time.sleep(0.05)
    assert marker.read_text() == "yes\n"
