"""What the end-to-end stories share: `baker` run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


class Baker:
    """`baker` as a user runs it: a child process, JSON on stdout, progress on stderr."""

    def __init__(self, project: Path) -> None:
        self.project = project

    def __call__(self, *args: str, local: bool = True) -> tuple[int, dict[str, Any], str]:
        argv = [sys.executable, "-m", "baker", "--project", str(self.project), "--output", "json"]
        argv += ["--local", *args] if local else list(args)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 1, f"--output json prints exactly one JSON object, got:\n{proc.stdout}"
        return proc.returncode, json.loads(lines[0]), proc.stderr
