"""baker unlock -e ENV --force: break a stale deploy lock."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.errors import UsageError


def render(result: dict[str, Any]) -> str:
    held = result.get("released")
    lines = [
        f"{result['env']}: broke the deploy lock of {held.get('owner')} (held since {held.get('since')})"
        if held
        else f"{result['env']}: the deploy lock was not held"
    ]
    lines += [
        f"  release {r['id']} ({r['kind']} of {r['ami_id']}) closed as abandoned: {r['reason']}"
        for r in result.get("abandoned", [])
    ]
    return "\n".join(lines)


@click.command("unlock")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option("--force", is_flag=True, help="required: break the lock whoever holds it")
@click.pass_obj
def unlock(app: App, env_name: str, force: bool) -> None:
    """Break ENV's deploy lock. Only for a lock whose holder is gone (a killed CI job): what it
    left in progress is closed as abandoned, with what is live."""
    env = app.environment(env_name)
    stage = app.deploy(env)
    if not force:
        held = stage.lock("unlock").holder()
        who = f"held by {held.get('owner')} since {held.get('since')}" if held else "not held"
        raise UsageError(
            f"the deploy lock of {env.name} is {who}; breaking it needs --force", details={"lock": held}
        )
    result = stage.break_lock()
    app.emit({"env": env.name, "lock_id": f"{app.project.app.name}/{env.name}", **result}, render)
