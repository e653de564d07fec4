"""baker retire -e ENV [--force]: scale a blue/green environment's previous color to zero."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment


def render(result: dict[str, Any]) -> str:
    if result.get("retired"):
        return f"{result['env']}: {result['retired']} ({result.get('idle_ami_id')}) scaled to zero"
    return f"{result['env']}: nothing retired: {result.get('reason')}"


@click.command("retire")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option("--force", is_flag=True, help="retire now, before deploy.keep_previous has passed")
@click.pass_obj
def retire(app: App, env_name: str, force: bool) -> None:
    """Scale ENV's previous color to zero once deploy.keep_previous has passed since the live
    release got healthy (blue_green only). Until then a rollback is a weight flip; after it, a
    rollback launches the previous color again. Run it from a scheduled CI job."""
    env = app.environment(env_name)
    app.emit(app.deploy(env).retire(force=force), render)
