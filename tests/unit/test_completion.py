"""Shell completion: click's scripts, and -e/--env completing the project's environment names."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from baker.cli import cli, main
from tests.conftest import REPO, need_tools


def completion_script(capsys, shell: str) -> str:
    assert main(["completion", shell]) == 0
    return capsys.readouterr().out


def test_bash_accepts_the_bash_script(capsys, tmp_path):
    need_tools("bash")
    script = tmp_path / "baker.bash"
    script.write_text(completion_script(capsys, "bash"))
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "_BAKER_COMPLETE=bash_complete" in script.read_text()


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts(capsys, shell):
    assert f"_BAKER_COMPLETE={shell}_complete" in completion_script(capsys, shell)


def test_an_unknown_shell_is_bad_usage(capsys):
    assert main(["completion", "tcsh"]) == 2
    assert "tcsh" in capsys.readouterr().err


def complete(words: str, cwd: Path = REPO) -> list[str]:
    """What bash would offer for the last word of ``words``, through click's _BAKER_COMPLETE protocol."""
    env = {
        **os.environ,
        "_BAKER_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "baker"], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [line.partition(",")[2] for line in proc.stdout.splitlines()]


def test_env_completes_from_the_projects_environments():
    assert complete("baker render -e ") == ["dev", "dev-layered", "prod", "staging"]
    assert complete("baker config show --env s") == ["staging"]


def test_env_completion_reads_the_project_named_by_project(tmp_path):
    (tmp_path / "environments").mkdir()
    for name in ("defaults", "qa", "live"):
        (tmp_path / "environments" / f"{name}.yml").write_text("{}\n")
    assert complete(f"baker --project {tmp_path} deploy -e ") == ["live", "qa"]
    assert complete("baker bake -e ", cwd=tmp_path) == ["live", "qa"]


def test_every_env_option_completes_environment_names():
    def options(command: click.Command, path: str):
        for param in command.params:
            if "--env" in getattr(param, "opts", []):
                yield path, param
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                yield from options(command.get_command(ctx, name), f"{path} {name}")

    found = list(options(cli, "baker"))
    assert len(found) >= 8
    root = click.Context(cli)
    root.params["project_dir"] = str(REPO)
    for path, param in found:
        offered = [item.value for item in param.shell_complete(click.Context(cli, parent=root), "")]
        assert offered == ["dev", "dev-layered", "prod", "staging"], path
