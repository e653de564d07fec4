"""baker deploy -e ENV --ami ID: Terraform handoff, health-gated rollout, automatic rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from baker.cli.app import App, complete_environment

F = TypeVar("F", bound=Callable[..., Any])


def render(result: dict[str, Any]) -> str:
    """The text form of a deploy (or release) result."""
    if result.get("outcome") == "planned":
        lines = [
            f"{result['env']}: dry run, nothing changed; would deploy {result['ami_id']}"
            f" (live: {result.get('previous_ami_id') or 'nothing recorded'})",
            result.get("plan_text", ""),
        ]
        if result.get("would_refuse"):
            lines.append("the plan gate would refuse this plan (it replaces the fleet); see --allow-replace")
        return "\n".join(line for line in lines if line)
    version = f" (version {result['version']})" if result.get("version") else ""
    prev = result.get("previous_ami_id") or "none"
    kind = result.get("kind", "deploy")
    return f"{result['env']}: {kind} {result['outcome']} on {result['ami_id']}{version}; previous {prev}"


def rollout_options(command: F) -> F:
    """The options of every command that ends in a rollout (deploy, release)."""
    for option in reversed(
        (
            click.option(
                "--timeout",
                type=click.IntRange(min=10),
                default=None,
                help="seconds to wait for a healthy fleet [default: deploy.health_timeout]",
            ),
            click.option("--no-rollback", is_flag=True, help="on failure leave the failed state as it is"),
            click.option(
                "--allow-replace",
                is_flag=True,
                help="let the plan replace or delete the Auto Scaling group, load balancer or target group",
            ),
        )
    ):
        command = option(command)
    return command


@click.command("deploy")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option("--ami", "ami_id", required=True, help="the AMI to roll out")
@rollout_options
@click.option("--dry-run", is_flag=True, help="print the Terraform plan summary and change nothing")
@click.pass_obj
def deploy(
    app: App,
    env_name: str,
    ami_id: str,
    timeout: int | None,
    no_rollback: bool,
    allow_replace: bool,
    dry_run: bool,
) -> None:
    """Point ENV's fleet at an AMI and wait until every instance is healthy on it (or roll back)."""
    from baker.deploy import Options

    env = app.environment(env_name)
    stage = app.deploy(env)
    options = Options(timeout=timeout, rollback=not no_rollback, allow_replace=allow_replace)
    app.emit(stage.run(ami_id, options=options, dry_run=dry_run), render)
