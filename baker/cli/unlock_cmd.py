"""baker unlock -e ENV --force: break a stale deploy lock."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.errors import UsageError


def render(result: dict[str, Any]) -> str:
    held = result.get("released")
    if not held:
        return f"{result['env']}: the deploy lock was not held"
    return f"{result['env']}: broke the deploy lock of {held.get('owner')} (held since {held.get('since')})"


@click.command("unlock")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option("--force", is_flag=True, help="required: break the lock whoever holds it")
@click.pass_obj
def unlock(app: App, env_name: str, force: bool) -> None:
    """Break ENV's deploy lock. Only for a lock whose holder is gone (a killed CI job)."""
    from baker.ledger import lock_for

    env = app.environment(env_name)
    state = app.project.settings.state
    lock = lock_for(
        app.aws(env),
        table=state.table,
        app=app.project.app.name,
        env=env.name,
        lease_seconds=state.lock_lease_seconds,
    )
    if not force:
        lock.ensure_table()
        held = lock.holder()
        who = f"held by {held.get('owner')} since {held.get('since')}" if held else "not held"
        raise UsageError(
            f"the deploy lock of {env.name} is {who}; breaking it needs --force", details={"lock": held}
        )
    app.emit({"env": env.name, "lock_id": lock.lock_id, "released": lock.force_release()}, render)
