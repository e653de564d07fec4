"""What a command costs before it does anything: ``import baker.cli``, ``--help`` and each TAB of the
shell completion load no AWS SDK, no Jinja2, no emulator and no configuration models.

Each check runs a fresh interpreter (the modules a test process already holds prove nothing) and
reads its ``sys.modules`` at exit; no timings (those are bench/bench_start.py's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("boto3", "botocore", "jinja2", "moto")

#: runs baker's console entry in-process and prints, at exit, the top-level packages it imported
REPORT = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr))
sys.argv = ["baker", *sys.argv[1:]]
from baker.cli import run
run()
"""


def imported(*args: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """(top-level packages imported, stdout) of ``baker ARGS`` in a new process."""
    proc = subprocess.run(
        [sys.executable, "-c", REPORT, *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stderr.splitlines()[-1])), proc.stdout


def test_importing_the_cli_imports_no_aws_sdk_jinja2_or_emulator():
    proc = subprocess.run(
        [sys.executable, "-c", "import json, sys, baker.cli; print(json.dumps(sorted(sys.modules)))"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = {m.split(".")[0] for m in json.loads(proc.stdout)}
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_help_and_a_completion_build_no_configuration_and_import_no_aws_sdk():
    loaded, out = imported("--help")
    assert "rollback" in out
    assert loaded.isdisjoint({*HEAVY, "pydantic"}), sorted(loaded & {*HEAVY, "pydantic"})
    words = "baker rollback -e "
    loaded, out = imported(
        env={
            "_BAKER_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        }
    )
    assert [line.partition(",")[2] for line in out.splitlines()] == ["dev", "dev-layered", "prod", "staging"]
    assert loaded.isdisjoint({*HEAVY, "pydantic", "yaml"}), sorted(loaded & {*HEAVY, "pydantic", "yaml"})
