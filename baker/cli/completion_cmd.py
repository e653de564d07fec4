"""baker completion bash|zsh|fish."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from baker.cli.app import App

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_obj
def completion(app: App, shell: str) -> None:
    """Print the shell completion script of SHELL (environment names come from the project).

    \b
    bash:  eval "$(baker completion bash)"    (in ~/.bashrc)
    zsh:   eval "$(baker completion zsh)"     (in ~/.zshrc)
    fish:  baker completion fish > ~/.config/fish/completions/baker.fish
    """
    from baker.cli import cli

    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    script = cls(cli, {}, "baker", "_BAKER_COMPLETE").source()
    app.emit({"shell": shell, "script": script}, script.rstrip("\n"))
