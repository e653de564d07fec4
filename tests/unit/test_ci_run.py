""".ci/run: lint, then the README's test command; a run with any skipped test fails.

The real `make test` is the whole suite (this test among it), so here a stand-in `make`, first on
PATH, plays both targets and prints what pytest would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, need_tools


def ci_run(
    tmp_path: Path, summary: str, test_status: int = 0, lint_status: int = 0
) -> subprocess.CompletedProcess:
    need_tools("bash")
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", checkout / ".ci" / "run")
    fake = tmp_path / "bin"
    fake.mkdir()
    make_standin = fake / "make"
    make_standin.write_text(
        "#!/bin/sh\n"
        'echo "make $*" >> "$CALLS"\n'
        f'if [ "$1" = lint ]; then exit {lint_status}; fi\n'
        f"printf '%s\\n' 'SKIPPED [1] tests/unit/test_x.py:3: missing on this machine: lintian' '{summary}'\n"
        f"exit {test_status}\n"
    )
    make_standin.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}", "CALLS": str(tmp_path / "calls")}
    return subprocess.run(["bash", str(checkout / ".ci" / "run")], env=env, capture_output=True, text=True)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


def test_a_clean_run_passes_and_lints_first(tmp_path):
    proc = ci_run(tmp_path, "240 passed in 600.12s (0:10:00)")
    assert proc.returncode == 0, proc.stderr
    assert calls(tmp_path) == ["make lint", "make test"]


@pytest.mark.parametrize("summary", ["238 passed, 2 skipped in 601.00s", "1 failed, 2 skipped in 3.00s"])
def test_any_skip_fails_the_run_and_says_which(tmp_path, summary):
    proc = ci_run(tmp_path, summary)
    assert proc.returncode == 1
    assert "skipped" in proc.stderr and "missing on this machine: lintian" in proc.stderr


def test_failing_tests_fail_the_run(tmp_path):
    assert ci_run(tmp_path, "1 failed, 239 passed in 600.00s", test_status=1).returncode == 1


def test_failing_lint_fails_the_run_before_the_tests(tmp_path):
    assert ci_run(tmp_path, "240 passed in 1.00s", lint_status=2).returncode != 0
    assert calls(tmp_path) == ["make lint"]
