"""baker pin -e ENV --ami ID --reason TEXT / baker unpin -e ENV."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.cli.deploy_cmd import render as render_deploy
from baker.cli.deploy_cmd import rollout_options


def render_pin(result: dict[str, Any]) -> str:
    text = render_deploy(result)
    pinned = result.get("pinned")
    if pinned:
        text += f"\n{result['env']} is pinned to {pinned['ami_id']}: {pinned['reason']!r} ({pinned['by']})"
    for warning in result.get("warnings", []):
        text += f"\nwarning: {warning}"
    return text


@click.command("pin")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option("--ami", "ami_id", required=True, help="the AMI to deploy and freeze the environment on")
@click.option("--reason", required=True, help="why (shown to everyone the pin refuses)")
@rollout_options
@click.option("--dry-run", is_flag=True, help="print the plan; change nothing")
@click.pass_obj
def pin(
    app: App,
    env_name: str,
    ami_id: str,
    reason: str,
    timeout: int | None,
    no_rollback: bool,
    allow_replace: bool,
    dry_run: bool,
) -> None:
    """Deploy AMI to ENV and freeze it there: deploys and promotions are refused until unpinned."""
    from baker.deploy import Options
    from baker.pin import Pin

    env = app.environment(env_name)
    stage = Pin(app.deploy(env))
    options = Options(timeout=timeout, rollback=not no_rollback, allow_replace=allow_replace)
    app.emit(stage.pin(ami_id, reason=reason, options=options, dry_run=dry_run), render_pin)


@click.command("unpin")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.pass_obj
def unpin(app: App, env_name: str) -> None:
    """Lift ENV's pin (what runs stays as it is)."""
    from baker.pin import Pin

    env = app.environment(env_name)
    result = Pin(app.deploy(env)).unpin()
    app.emit(
        result,
        lambda r: (
            f"{r['env']}: unpinned (was {r['unpinned']['ami_id']}: {r['unpinned']['reason']!r})"
            if r.get("unpinned")
            else f"{r['env']}: was not pinned"
        ),
    )
