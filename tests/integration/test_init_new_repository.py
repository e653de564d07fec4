"""`baker init` then `baker render -e dev` against the local cloud: the new project renders at once."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from baker.cli import main
from tests.conftest import commit_all, git, need_tools

pytestmark = pytest.mark.integration


def baker(*args: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--output", "json", *args])
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return code, json.loads(lines[-1]) if lines else {}, err.getvalue()


def test_init_then_render_dev(tmp_path: Path, local_cloud: Any) -> None:
    need_tools("git", "dpkg-deb", "packer")
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    (root / "src" / "tiny.py").write_text("print('tiny')\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "tiny app")

    code, _, err = baker("init", str(root), "--app", "tiny", "--source", "src")
    assert code == 0, err
    code, _, err = baker("--project", str(root), "config", "show", "-e", "dev")
    assert code == 0, err
    # before the commit, a render says so (a dirty tree is refused) or builds a .dirty version
    code, _, err = baker("--project", str(root), "--local", "render", "-e", "dev")
    assert code == 2 and "uncommitted" in err and "--allow-dirty" in err
    code, r, err = baker("--project", str(root), "--local", "render", "-e", "dev", "--allow-dirty")
    assert code == 0, err
    commit_all(root)
    code, r, err = baker("--project", str(root), "--local", "render", "-e", "dev")
    assert code == 0, err
    template = Path(r["template"])
    assert template == root / ".baker/build/dev/ami.pkr.hcl" and template.is_file()
    text = template.read_text()
    assert '"baker:app"       = "tiny"' in text and '\\"baker_package\\":\\"tiny\\"' in text
    assert r["source_ami"].startswith("ami-") and r["validated"] == "syntax"
