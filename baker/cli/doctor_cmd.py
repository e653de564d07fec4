"""baker doctor [-e ENV]."""

from __future__ import annotations

import click

from baker.cli.app import App, complete_environment
from baker.errors import UsageError


@click.command("doctor")
@click.option(
    "-e",
    "--env",
    "env_names",
    multiple=True,
    help="environment to check (default: all of them)",
    shell_complete=complete_environment,
)
@click.pass_obj
def doctor(app: App, env_names: tuple[str, ...]) -> None:
    """Check the tools, their versions, AWS credentials and state of each environment; say what to do.

    Exit 0 when everything is ready, 2 otherwise; nothing is changed.
    """
    from baker import doctor as stage

    result = stage.Doctor(app.project, app.aws, local=app.local).run(list(env_names) or None)
    if not result["ok"]:
        raise UsageError(stage.text(result), details=result)
    app.emit(result, stage.text)
