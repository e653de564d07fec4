"""baker revoke --ami ID --reason TEXT [--dry-run] / baker unrevoke --ami ID [--dry-run]."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App
from baker.cli.table import table


def render_revoke(result: dict[str, Any]) -> str:
    marks = result["revoked"]
    verb = "would revoke" if result["dry_run"] else "revoked"
    lines = [
        f"{verb} {result['ami_id']} and {len(marks) - 1} copies and children: {result['reason']!r} "
        f"({result['by']}, {result['at']})",
        "",
        table(
            ["AMI", "WHERE", "VERSION", "AS"],
            [[m["ami_id"], f"{m['account_id']}/{m['region']}", m["version"], m["relation"]] for m in marks],
        ),
    ]
    for ami, refs in result["in_use"].items():
        lines.append(f"{ami} is used by {', '.join(refs)}")
    if result["dry_run"]:
        lines += ["", "nothing was changed; run without --dry-run to revoke"]
    return "\n".join(lines)


def render_unrevoke(result: dict[str, Any]) -> str:
    lifted = [u["ami_id"] for u in result["unrevoked"]]
    verb = "would lift" if result["dry_run"] else "lifted"
    if not lifted:
        return f"{result['ami_id']} is not revoked"
    return f"{verb} the revocation of {', '.join(lifted)}"


@click.command("revoke")
@click.option("--ami", "ami_id", required=True, help="the AMI to revoke, with every copy and child of it")
@click.option("--reason", required=True, help="why (shown to everyone the revocation refuses)")
@click.option("--dry-run", is_flag=True, help="list every image it would mark; change nothing")
@click.pass_obj
def revoke(app: App, ami_id: str, reason: str, dry_run: bool) -> None:
    """Mark AMI and every copy and child of it revoked: deploy, release, promote, pin and rollback
    refuse them (exit 6) and the automatic rollback passes over them."""
    from baker.revoke import Revoke

    envs = [app.environment(n) for n in app.project.environment_names()]
    app.emit(Revoke(app.project, envs, app.aws).run(ami_id, reason=reason, dry_run=dry_run), render_revoke)


@click.command("unrevoke")
@click.option("--ami", "ami_id", required=True, help="the AMI whose revocation to lift")
@click.option("--dry-run", is_flag=True, help="list every image it would unmark; change nothing")
@click.pass_obj
def unrevoke(app: App, ami_id: str, dry_run: bool) -> None:
    """Lift the revocation of AMI and of the copies and children that inherited it."""
    from baker.revoke import Revoke

    envs = [app.environment(n) for n in app.project.environment_names()]
    app.emit(Revoke(app.project, envs, app.aws).unrevoke(ami_id, dry_run=dry_run), render_unrevoke)
