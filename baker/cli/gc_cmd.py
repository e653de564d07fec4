"""baker gc [-e ENV]... [--keep N] [--older-than DAYS] [--apply]: deregister AMIs nobody needs."""

from __future__ import annotations

import functools
from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.cli.table import table
from baker.gc import DEFAULT_KEEP, DEFAULT_OLDER_THAN_DAYS
from baker.images import GIB


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def place(row: dict[str, Any]) -> str:
    return f"{row['account_id']}/{row['region']}"


def render(result: dict[str, Any]) -> str:
    dry = result["dry_run"]
    deleted, kept, snaps = result["deleted"], result["kept"], result["snapshots_deleted"]
    where = ", ".join(f"{p['account_id']}/{p['region']}" for p in result["places"] if p["deletable"])
    verb = "would deregister" if dry else "deregistered"
    head = (
        f"{'dry run: ' if dry else ''}{verb} {len(deleted)} AMI{'s' if len(deleted) != 1 else ''} of "
        f"{result['app']} and their snapshots ({gib(result['bytes_freed'])}"
        f"{' to free' if dry else ' freed'}), kept {len(kept)}; in {where or 'nowhere'}"
    )
    sections = [
        (
            ["DELETE", "REGION", "VERSION", "CREATED", "SIZE"],
            [[d["ami_id"], place(d), d["version"], d["created"], gib(d["bytes"])] for d in deleted],
        ),
        (
            ["SNAPSHOT", "REGION", "SIZE", "WHY"],
            [[s["snapshot_id"], place(s), gib(s["bytes"]), s["reason"]] for s in snaps],
        ),
        (
            ["KEEP", "REGION", "VERSION", "WHY"],
            [[k["ami_id"], place(k), k["version"], "; ".join(k["reasons"])] for k in kept],
        ),
    ]
    lines = [head]
    for headers, rows in sections:
        if rows:
            lines += ["", table(headers, rows)]
    if dry and deleted:
        lines += ["", "nothing was changed; run with --apply to delete"]
    return "\n".join(lines)


@click.command("gc")
@click.option(
    "-e",
    "--env",
    "env_names",
    multiple=True,
    help="clean only these environments' accounts and regions",
    shell_complete=complete_environment,
)
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    default=DEFAULT_KEEP,
    show_default=True,
    help="keep the AMIs of this many newest healthy releases of every environment",
)
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0),
    default=DEFAULT_OLDER_THAN_DAYS,
    show_default=True,
    help="days: younger AMIs are kept",
)
@click.option("--apply", is_flag=True, help="deregister and delete; without it, only say what would go")
@click.pass_obj
def gc(app: App, env_names: tuple[str, ...], keep: int, older_than: float, apply: bool) -> None:
    """Deregister the app's AMIs that nothing uses, pins or may roll back to, and delete their
    snapshots. Every environment's ledger and fleets are read, whatever -e says."""
    from baker.gc import GC

    envs = [app.environment(n) for n in app.project.environment_names()]
    stage = GC(
        app.project,
        envs,
        functools.partial(app.aws, group="gc"),
        only=env_names,
        keep=keep,
        older_than_days=older_than,
    )
    app.emit(stage.run(apply=apply), render)
