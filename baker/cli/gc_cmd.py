"""baker gc [-e ENV]... [--keep N] [--older-than DAYS] [--disable-after DAYS] [--delete-after DAYS]
[--launched-within DAYS] [--apply]: walk the AMIs nobody needs through deprecate, disable, deregister."""

from __future__ import annotations

import functools
from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.cli.table import table
from baker.retention import (
    DEFAULT_DELETE_AFTER_DAYS,
    DEFAULT_DISABLE_AFTER_DAYS,
    DEFAULT_KEEP,
    DEFAULT_LAUNCHED_WITHIN_DAYS,
    DEFAULT_OLDER_THAN_DAYS,
)


def gib(n: int) -> str:
    from baker.images import GIB

    return f"{n / GIB:.1f} GiB"


def place(row: dict[str, Any]) -> str:
    return f"{row['account_id']}/{row['region']}"


def render(result: dict[str, Any]) -> str:
    dry = result["dry_run"]
    deleted, kept, snaps = result["deleted"], result["kept"], result["snapshots_deleted"]
    where = ", ".join(f"{p['account_id']}/{p['region']}" for p in result["places"] if p["deletable"])
    verb = "would deregister" if dry else "deregistered"
    staged = {what: result.get(what, []) for what in ("deprecated", "disabled", "waiting")}
    head = (
        f"{'dry run: ' if dry else ''}{verb} {len(deleted)} AMI{'s' if len(deleted) != 1 else ''} of "
        f"{result['app']} and their snapshots ({gib(result['bytes_freed'])}"
        f"{' to free' if dry else ' freed'}), {'would deprecate' if dry else 'deprecated'} "
        f"{len(staged['deprecated'])}, {'would disable' if dry else 'disabled'} {len(staged['disabled'])}, "
        f"kept {len(kept)}; in {where or 'nowhere'}"
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
        *[
            (
                [what.upper(), "REGION", "VERSION", "WHY"],
                [[r["ami_id"], place(r), r["version"], r["why"]] for r in result.get(what, [])],
            )
            for what in ("deprecated", "disabled", "waiting", "restored", "protected", "unprotected")
        ],
        (
            ["KEEP", "REGION", "VERSION", "WHY"],
            [[k["ami_id"], place(k), k["version"], "; ".join(k["reasons"])] for k in kept],
        ),
    ]
    lines = [head]
    for headers, rows in sections:
        if rows:
            lines += ["", table(headers, rows)]
    if dry and (deleted or staged["deprecated"] or staged["disabled"]):
        lines += ["", "nothing was changed; run with --apply to take each AMI one stage on"]
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
@click.option(
    "--disable-after",
    "disable_after",
    type=click.FloatRange(min=0),
    default=DEFAULT_DISABLE_AFTER_DAYS,
    show_default=True,
    help="days an unused AMI stays deprecated before it is disabled",
)
@click.option(
    "--delete-after",
    "delete_after",
    type=click.FloatRange(min=0),
    default=DEFAULT_DELETE_AFTER_DAYS,
    show_default=True,
    help="days a disabled AMI stays restorable before it is deregistered with its snapshots",
)
@click.option(
    "--launched-within",
    "launched_within",
    type=click.FloatRange(min=0),
    default=DEFAULT_LAUNCHED_WITHIN_DAYS,
    show_default=True,
    help="days: an AMI launched more recently (LastLaunchedTime) is kept",
)
@click.option("--apply", is_flag=True, help="make the changes; without it, only say what would happen")
@click.pass_obj
def gc(
    app: App,
    env_names: tuple[str, ...],
    keep: int,
    older_than: float,
    disable_after: float,
    delete_after: float,
    launched_within: float,
    apply: bool,
) -> None:
    """Walk the app's AMIs that nothing uses, pins or may roll back to through deprecated, disabled
    and deregistered (with their snapshots), one stage per run; protect the live, previous and
    pinned AMIs from deregistration. Every environment's ledger and fleets are read, whatever -e says."""
    from baker.gc import GC

    envs = [app.environment(n) for n in app.project.environment_names()]
    stage = GC(
        app.project,
        envs,
        functools.partial(app.aws, group="gc"),
        only=env_names,
        keep=keep,
        older_than_days=older_than,
        disable_after_days=disable_after,
        delete_after_days=delete_after,
        launched_within_days=launched_within,
    )
    app.emit(stage.run(apply=apply), render)
