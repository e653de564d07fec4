"""baker history -e ENV [--limit N]: the environment's releases, newest first."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.cli.table import table


def short_time(at: str | None) -> str | None:
    """2026-12-01T03:04:05.678Z -> 2026-12-01 03:04:05Z (what a person compares)."""
    if not at:
        return at
    return at.replace("T", " ").split(".", 1)[0].removesuffix("Z") + "Z"


def render(result: dict[str, Any]) -> str:
    releases = result["releases"]
    if not releases:
        return f"{result['env']}: no releases recorded"
    rows = []
    for r in releases:
        note = r.get("pin_reason") if r["kind"] in ("pin", "unpin") else r.get("reason")
        if r.get("promoted_from"):
            src = r["promoted_from"]
            note = f"from {src.get('env')} {src.get('ami_id')}" + (f"; {note}" if note else "")
        if r.get("base_ami_id"):
            note = f"on base {r['base_ami_id']}" + (f"; {note}" if note else "")
        rows.append(
            [
                short_time(r["at"]),
                r["kind"],
                r["ami_id"],
                r["version"],
                r["outcome"],
                r["previous_ami_id"],
                r["by"],
                note,
            ]
        )
    head = f"{result['env']}: {len(releases)} release{'s' if len(releases) != 1 else ''}, newest first"
    return head + "\n" + table(["AT", "KIND", "AMI", "VERSION", "OUTCOME", "PREVIOUS", "BY", "NOTE"], rows)


@click.command("history")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most this many [default: all]")
@click.pass_obj
def history(app: App, env_name: str, limit: int | None) -> None:
    """ENV's releases from the ledger, newest first: kind, AMI, version, outcome, when, by whom."""
    from baker.history import History
    from baker.ledger import Ledger

    env = app.environment(env_name)
    ledger = Ledger(
        app.aws(env), table=app.project.settings.state.table, app=app.project.app.name, env=env.name
    )
    app.emit(History(ledger).read(limit), render)
