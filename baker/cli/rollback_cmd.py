"""baker rollback -e ENV [--to ID]: deploy the previous good release (its AMI and its runtime)."""

from __future__ import annotations

import click

from baker.cli.app import App, complete_environment
from baker.cli.deploy_cmd import render, rollout_options


@click.command("rollback")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option(
    "--to", "to", default=None, help="an AMI that was healthy in ENV before [default: the previous]"
)
@rollout_options
@click.option("--dry-run", is_flag=True, help="print the plan; change nothing")
@click.pass_obj
def rollback(
    app: App,
    env_name: str,
    to: str | None,
    timeout: int | None,
    no_rollback: bool,
    allow_replace: bool,
    dry_run: bool,
) -> None:
    """Go back to ENV's previous good release: the newest healthy one on another AMI than the
    live one, or --to an AMI that was healthy there, with the runtime values it ran with."""
    from baker.deploy import Options
    from baker.deploy.rollback import Rollback

    env = app.environment(env_name)
    stage = Rollback(app.deploy(env))
    options = Options(timeout=timeout, rollback=not no_rollback, allow_replace=allow_replace)
    app.emit(stage.run(to=to, options=options, dry_run=dry_run), render)
