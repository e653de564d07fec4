"""baker verify -e ENV --ami ID: boot the AMI, run the smoke checks over SSH, tag it verified."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['ami_id']}: {'verified' if result['verified'] else 'NOT verified'}"]
    for check in result.get("checks", []):
        lines.append(f"  {'pass' if check['ok'] else 'FAIL'}  {check['name']}: {check['output']}")
    if result.get("tag"):
        lines.append(f"  tagged baker:verified={result['tag']}")
    return "\n".join(lines)


@click.command("verify")
@click.option(
    "-e",
    "--env",
    "env_name",
    required=True,
    help="environment whose bake network settings to use",
    shell_complete=complete_environment,
)
@click.option("--ami", "ami_id", required=True, help="the AMI to verify")
@click.option("--boot-timeout", type=click.IntRange(min=10), default=300, show_default=True,
              help="seconds the instance may take until SSH answers")  # fmt: skip
@click.pass_obj
def verify(app: App, env_name: str, ami_id: str, boot_timeout: int) -> None:
    """Boot one instance of an AMI, run baker.yml's smoke checks on it over SSH, tag it verified.

    A failing check exits 7. The instance, its key pair and security group are always removed.
    """
    from baker.verify import Verify

    env = app.environment(env_name)
    reach = None
    if app.local:
        from baker.local import cloud
        from baker.local.instances import LocalReach

        reach = LocalReach(cloud.resolve_state_dir())
    result = Verify(app.project, env, app.aws(env, "bake"), reach=reach, boot_timeout=boot_timeout).run(
        ami_id
    )
    app.emit(result, render)
