"""`baker doctor`: tool versions against what baker supports; a failing check exits 2 and says what to do.

The AWS checks run against the local cloud (tests/integration/test_doctor.py); here nothing
reaches AWS: an environment that does not load fails before any client is made.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from baker import doctor
from baker.cli import main
from tests.conftest import REPO, need_tools


def baker(*args: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--output", "json", *args])
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return code, json.loads(lines[-1]) if lines else {}, err.getvalue()


@pytest.mark.parametrize(
    ("tool", "text", "version"),
    [
        ("packer", "Packer v1.6.6\n", (1, 6, 6)),
        ("ansible-playbook", "ansible-playbook [core 2.19.14]\n  config file = None\n", (2, 19, 14)),
        ("terraform", "Terraform v1.11.4\non linux_amd64\n", (1, 11, 4)),
        ("tofu", "OpenTofu v1.8.3\non linux_amd64\n", (1, 8, 3)),
        ("dpkg-deb", "Debian 'dpkg-deb' packaging tool version 1.21.22 (amd64).\n", (1, 21, 22)),
    ],
)
def test_versions_are_read_from_each_tools_own_words(tool, text, version):
    assert doctor.parse_version(tool, text) == version


def test_supported_ranges():
    assert doctor.supported("ansible-playbook", (2, 16, 0)) and doctor.supported(
        "ansible-playbook", (2, 19, 9)
    )
    assert not doctor.supported("ansible-playbook", (2, 20, 0))
    assert not doctor.supported("ansible-playbook", (2, 15, 13))
    assert doctor.supported("terraform", (1, 5, 0)) and not doctor.supported("terraform", (1, 4, 7))
    assert doctor.supported("packer", (1, 6, 6)) and doctor.supported("packer", (1, 11, 2))


def test_the_installed_tools_are_found_with_their_versions():
    need_tools("packer", "dpkg-deb")
    for tool in ("packer", "dpkg-deb"):
        check = doctor.check_tool(tool)
        assert check.ok, check
        assert "baker supports" in check.detail and check.fix == ""


def test_a_missing_tool_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    check = doctor.check_tool("packer")
    assert not check.ok and check.detail == "not found on PATH" and check.fix == "apt-get install packer"


def test_a_too_old_tool_says_what_baker_supports(monkeypatch, tmp_path):
    # a stand-in: a 'packer' that only answers its version, an old one
    old_packer = tmp_path / "packer"
    old_packer.write_text("#!/bin/sh\necho 'Packer v1.5.6'\n")
    old_packer.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    check = doctor.check_tool("packer")
    assert not check.ok
    assert check.detail.startswith(f"1.5.6 at {old_packer}; baker supports >= 1.6.0")


def test_a_broken_environment_fails_its_check_and_exits_2(tmp_path):
    need_tools("packer", "dpkg-deb")
    project = tmp_path / "p"
    project.mkdir()
    (project / "baker.yml").write_bytes((REPO / "baker.yml").read_bytes())
    (project / "environments").mkdir()
    (project / "environments" / "defaults.yml").write_bytes((REPO / "environments/defaults.yml").read_bytes())
    (project / "environments" / "dev.yml").write_text("aws:\n  regoin: us-east-1\n")
    shutil.copytree(REPO / "terraform", project / "terraform")
    code, r, err = baker("--project", str(project), "doctor")
    assert code == 2 and r["ok"] is False and r["exit_code"] == 2
    by_name = {(c["env"], c["name"]): c for c in r["checks"]}
    assert by_name[(None, "packer")]["ok"] is True
    broken = by_name[("dev", "configuration")]
    assert broken["ok"] is False and "regoin" in broken["detail"] and broken["fix"]
    assert "FAIL  dev: configuration" in err and "1 of 7 checks failed" in err


def test_text_lists_every_check_and_the_fix_of_a_failing_one():
    result = {
        "ok": False,
        "failed": 1,
        "checks": [
            doctor.Check("packer", True, "1.6.6").as_dict(),
            doctor.Check("state table", False, "missing", "create it", env="dev").as_dict(),
        ],
    }
    assert doctor.text(result).splitlines() == [
        "ok    packer: 1.6.6",
        "FAIL  dev: state table: missing",
        "        fix: create it",
        "1 of 2 checks failed",
    ]


def test_unknown_environment_is_a_failing_check(tmp_path):
    code, r, _ = baker("--project", str(REPO), "doctor", "-e", "nope")
    assert code == 2
    assert [c["name"] for c in r["checks"] if not c["ok"]] == ["configuration"]
    assert Path(REPO / "environments" / "nope.yml").exists() is False
