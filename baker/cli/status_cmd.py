"""baker status [-e ENV]...: what runs where, pinned or not, and whether AWS agrees with the ledger."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment
from baker.cli.history_cmd import short_time
from baker.cli.table import table


def fleet_cell(env: dict[str, Any]) -> str | None:
    fleet = env.get("fleet")
    if not fleet:
        return None
    if not fleet["found"]:
        return "group gone"
    running = sum(fleet["in_service"].values())
    return f"{running}/{fleet['desired']} in service"


def render(result: dict[str, Any]) -> str:
    envs = result["environments"]
    if not envs:
        return "no environments"
    rows = []
    notes = []
    for e in envs:
        name = e["env"]
        if e.get("error"):
            rows.append([name, "?", None, None, None, None, None, "?", "UNREADABLE"])
            notes.append(f"{name}: could not be read: {e['error']}")
            continue
        pin = e.get("pinned")
        drift = "DRIFT" if e["drift"] else "no"
        if not e["deployed"]:
            ami = "never deployed" if not e.get("fleet") else "nothing healthy"
        else:
            ami = e["ami_id"]
        rows.append(
            [
                name,
                ami,
                e["version"],
                (e["git_sha"] or "")[:12] or None,
                short_time(e["deployed_at"]),
                e.get("by"),
                fleet_cell(e),
                f"PINNED {pin['ami_id']}" if pin else "no",
                drift,
            ]
        )
        if pin:
            notes.append(
                f"{name}: pinned to {pin.get('ami_id')} by {pin.get('by')} at {pin.get('at')}: "
                f"{pin.get('reason')!r} (lift with 'baker unpin -e {name}')"
            )
        if e.get("base_ami_id"):
            notes.append(f"{name}: {e['ami_id']} is an app layer on the base image {e['base_ami_id']}")
        for r in e.get("revoked") or []:
            by = f"revoked by {r['by']} at {r['at']}: {r['reason']!r}"
            notes.append(f"{name}: REVOKED: runs {r['ami_id']}, {by}")
        fleet = e.get("fleet")
        for reason in e.get("drift_reasons") or []:
            notes.append(f"{name}: DRIFT: {reason}")
        if e["drift"] and fleet and fleet["found"]:
            notes.append(
                f"{name}:   AWS: group {fleet['asg_name']} launches {fleet['launch_template_id']} version "
                f"{fleet['launch_template_version']} ({fleet['launch_template_ami_id']}), default version "
                f"{fleet['default_version']} ({fleet['default_version_ami_id']}), in service "
                + (", ".join(f"{a} x{n}" for a, n in fleet["in_service"].items()) or "none")
            )
        lock = e.get("lock")
        if lock:
            notes.append(
                f"{name}: deploy lock held by {lock.get('owner')} since {lock.get('since')} "
                f"({lock.get('purpose')})"
            )
        open_release = e.get("unfinished")
        if open_release:
            why = f": {open_release['reason']}" if open_release.get("reason") else ""
            notes.append(
                f"{name}: newest release {open_release['id']} ({open_release['kind']} of "
                f"{open_release['ami_id']} by {open_release['by']}) is {open_release['outcome']}{why}"
            )
    text = table(["ENV", "AMI", "VERSION", "GIT SHA", "DEPLOYED", "BY", "FLEET", "PIN", "DRIFT"], rows)
    return "\n".join([text, *(["", *notes] if notes else [])])


@click.command("status")
@click.option(
    "-e",
    "--env",
    "env_names",
    multiple=True,
    help="environment name [default: every one]",
    shell_complete=complete_environment,
)
@click.option(
    "--fail-on",
    "fail_on",
    type=click.Choice(["revoked"]),
    help="exit 6, naming each environment that runs a revoked AMI (the status in the JSON error): a CI alarm",
)
@click.pass_obj
def status(app: App, env_names: tuple[str, ...], fail_on: str | None) -> None:
    """What runs in each environment (ledger and AWS, no Terraform): AMI, version, git sha, when,
    by whom, the pin, the lock, an unfinished release, drift between the ledger and AWS, and
    whether it runs a revoked AMI."""
    from baker.status import Status, fail_on_revoked

    names = list(dict.fromkeys(env_names)) or app.project.environment_names()
    envs = [app.environment(n) for n in names]
    result = Status(app.project, envs, app.aws).read()
    if fail_on == "revoked":
        fail_on_revoked(result)
    app.emit(result, render)
