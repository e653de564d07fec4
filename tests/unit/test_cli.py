"""The CLI frame: exit codes, one JSON object, bugs are exit 1."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import subprocess
import sys

import click
import pytest

from baker import cli as cli_module
from baker.cli import cli, main
from baker.errors import Refused, RolledBack, ToolError


def invoke(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def failing_command():
    """A command registered only for this test that raises what it is given."""
    holder: dict = {}

    @cli.command("raise-for-test")
    def raiser() -> None:
        raise holder["error"]

    yield holder
    cli.commands.pop("raise-for-test")


def test_help_lists_commands():
    code, out, _ = invoke("--help")
    assert code == 0 and "config" in out and "--output" in out


def test_console_script_runs():
    proc = subprocess.run([sys.executable, "-m", "baker", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Usage" in proc.stdout


def test_unknown_command_is_usage_error():
    code, out, err = invoke("--output", "json", "frobnicate")
    assert code == 2
    assert json.loads(out)["exit_code"] == 2
    assert "frobnicate" in err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ToolError("packer failed", tool="packer", output_tail=["Build 'x' errored: boom"]), 3),
        (RolledBack("health gate failed", details={"outcome": "rolled_back", "ami_id": "ami-1"}), 4),
        (Refused("environment prod is pinned"), 6),
    ],
)
def test_baker_errors_map_to_their_exit_code(failing_command, error, code):
    failing_command["error"] = error
    rc, out, err = invoke("--output", "json", "raise-for-test")
    assert rc == code
    payload = json.loads(out)
    assert payload["exit_code"] == code and payload["ok"] is False
    assert error.message.splitlines()[0] in err
    if isinstance(error, RolledBack):
        assert payload["outcome"] == "rolled_back"
    if isinstance(error, ToolError):
        assert "boom" in err


def test_a_bug_is_exit_1_with_traceback_only_verbose(failing_command):
    failing_command["error"] = ZeroDivisionError("oops")
    rc, _, err = invoke("raise-for-test")
    assert rc == 1 and "a bug in baker" in err and "Traceback" not in err
    rc, _, err = invoke("-v", "raise-for-test")
    assert rc == 1 and "Traceback" in err


def test_interrupt_is_130(failing_command):
    failing_command["error"] = KeyboardInterrupt()
    rc, _, _ = invoke("raise-for-test")
    assert rc == 130


def test_each_commands_help_line_is_the_one_its_docstring_gives():
    """``baker --help`` lists the commands from the registry without importing them: each line must
    be what click makes of the command's own help, at every width."""
    for name, (module, line) in cli_module.COMMANDS.items():
        command = getattr(importlib.import_module(module), name.replace("-", "_"))
        assert command.name == name, f"{module} defines {command.name!r}, registered as {name!r}"
        for limit in (20, 45, 60, 94, 400):
            assert click.utils.make_default_short_help(line, limit) == command.get_short_help_str(limit), (
                f"COMMANDS[{name!r}]: the help line should be {command.get_short_help_str(400)!r}"
            )


def test_help_is_the_same_before_and_after_the_commands_are_imported():
    group = cli_module.LazyGroup(name="baker", lazy=cli_module.COMMANDS)

    def listed() -> str:
        ctx = click.Context(group, max_content_width=100)
        formatter = ctx.make_formatter()
        group.format_commands(ctx, formatter)
        return formatter.getvalue()

    lazily = listed()
    assert group.commands == {} and "rollback" in lazily
    group.loaded()
    assert listed() == lazily


def test_no_placeholder_commands():
    """Every registered command does something: none is a stub that only says 'not implemented'."""
    for name, command in cli.loaded().items():
        assert command.callback is not None or isinstance(command, click.Group), name
    assert cli_module.COMMANDS


def test_demo_with_an_unknown_environment_exits_2_before_starting_anything(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("BAKER_LOCAL_DIR", str(tmp_path / "local"))
    code, out, err = invoke("--project", str(repo), "--output", "json", "demo", "-e", "nosuch")
    assert code == 2, err
    assert "nosuch" in json.loads(out)["error"] and "dev" in err  # names the known ones
    assert not (tmp_path / "local").exists(), "no local cloud was started"
