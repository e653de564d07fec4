"""Job summaries: each command appends its result as Markdown to $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import contextlib
import io

import pytest

from baker import summary
from baker.cli import cli, command_path, main
from baker.errors import RolledBack
from tests.conftest import REPO

RELEASE = {
    "env": "dev",
    "ami_id": "ami-0123456789abcdef0",
    "previous_ami_id": "ami-00000000000000001",
    "outcome": "healthy",
    "seconds": {"apply": 12.34, "wait": 75.0, "total": 87.3},
    "bake": {"ami_id": "ami-0123456789abcdef0", "version": "1.2.3+g1a2b3c4", "cached": True, "duration": 4.2},
}


def invoke(*args: str) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(list(args))


def test_release_summary_has_what_a_reader_wants():
    text = summary.markdown("release", RELEASE, elapsed=95.0, ci_url="https://ci.example.com/runs/7")
    assert text.startswith("### ✅ baker release: healthy\n")
    rows = dict(
        line.strip("|").split(" | ", 1)
        for line in text.splitlines()
        if line.startswith("| ") and " | " in line
    )
    rows = {k.strip(): v.strip(" |") for k, v in rows.items()}
    assert rows["command"] == "`baker release`"
    assert rows["environment"] == "dev"
    assert rows["AMI"] == "ami-0123456789abcdef0"
    assert rows["previous AMI"] == "ami-00000000000000001"
    assert rows["version"] == "1.2.3+g1a2b3c4"
    assert rows["cache hit"] == "yes"
    assert rows["timings"] == "bake 4.2 s, apply 12.3 s, wait 1m 15s, total 1m 35s"
    assert rows["CI run"] == "https://ci.example.com/runs/7"


def test_failed_summary_shows_exit_code_and_error_in_a_fence_it_cannot_close():
    text = summary.markdown(
        "deploy", {"env": "dev", "outcome": "rolled_back"}, exit_code=4, error="bad | thing\n``` not the end"
    )
    assert text.startswith("### ❌ baker deploy: rolled_back")
    assert "| exit code | 4 |" in text
    assert "\n````text\nbad | thing\n``` not the end\n````\n" in text


def test_a_cell_cannot_break_the_table():
    text = summary.markdown("x", {"env": "a|b\nc"})
    assert "| environment | a\\|b c |" in text


def test_missing_values_are_left_out():
    text = summary.markdown("config show", {"env": "dev", "settings": {"x": 1}})
    assert "AMI" not in text and "cache hit" not in text and "settings" not in text


def test_command_path_of_argv():
    assert command_path(["--project", "config", "--output", "json", "config", "show", "-e", "dev"]) == (
        "config show"
    )
    assert command_path(["-v", "render", "-e", "dev"]) == "render"
    assert command_path(["frobnicate"]) == ""


def test_cli_appends_a_summary_per_command(tmp_path, monkeypatch):
    path = tmp_path / "summary.md"
    path.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    monkeypatch.setenv("BAKER_CI_URL", "https://ci.example.com/runs/42")
    assert invoke("--project", str(REPO), "--output", "json", "config", "show", "-e", "dev") == 0
    assert invoke("--project", str(REPO), "config", "show", "-e", "nope") == 2
    text = path.read_text()
    assert text.startswith("earlier step\n")  # appended, never overwritten
    first, second = text.split("### ")[1:]
    assert first.startswith("✅ baker config show: ok")
    assert "| environment | dev |" in first and "https://ci.example.com/runs/42" in first
    assert "| total |" not in first and "total " in first
    assert second.startswith("❌ baker config show: failed")
    assert "| exit code | 2 |" in second and "nope" in second


@pytest.fixture
def rolled_back_command():
    @cli.command("roll-back-for-test")
    def raiser() -> None:
        raise RolledBack(
            "health gate failed", details={"env": "dev", "outcome": "rolled_back", "ami_id": "ami-1"}
        )

    yield
    cli.commands.pop("roll-back-for-test")


def test_an_error_carries_its_result_into_the_summary(tmp_path, monkeypatch, rolled_back_command):
    path = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(path))
    assert invoke("roll-back-for-test") == 4
    text = path.read_text()
    assert text.startswith("### ❌ baker roll-back-for-test: rolled_back")
    assert "| AMI | ami-1 |" in text and "health gate failed" in text


def test_an_unwritable_summary_is_a_warning_not_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))  # a directory
    assert main(["--project", str(REPO), "config", "show", "-e", "dev"]) == 0
    assert "GITHUB_STEP_SUMMARY" in capsys.readouterr().err


def test_no_summary_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert invoke("--project", str(REPO), "config", "show", "-e", "dev") == 0
    assert list(tmp_path.iterdir()) == []
