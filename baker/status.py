"""status: what runs where, from the ledger and from AWS itself (never from Terraform).

The ledger says what *should* run: its live release names the fleet it changed (Auto Scaling
group, launch template id and version). AWS says what *does*: the group's launch template
version, the template's ``$Default`` version, and the AMIs of the group's in-service instances.
When any of them disagrees with the ledger's live AMI the environment has drifted: changed behind
baker's back, or a release that did not finish. A fixed number of calls per environment (one per
kind, the instances in chunks of 200), whatever the size of the fleet; environments are read
concurrently, each with its own account and region.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from baker import images
from baker.aws import AWS
from baker.config import Environment, Project
from baker.errors import BakerError, Refused
from baker.fleet import Fleet
from baker.fleet import read as read_fleet
from baker.ledger import FLEET_KINDS, Ledger, Lock, Release

log = logging.getLogger("baker")

#: outcomes of a newest release that an operator must see: it did not finish as planned
UNFINISHED = ("in_progress", "interrupted", "abandoned")


def drift(live: Release | None, fleet: Fleet | None) -> list[str]:
    """Pure: why what AWS runs disagrees with the ledger's live release (empty: it agrees)."""
    if fleet is None:
        return []
    if not fleet.found:
        return [f"Auto Scaling group {fleet.asg_name} not found"] if live is not None else []
    ami = live.ami_id if live is not None else None
    reasons = []
    if live is None:
        seen = sorted({a for a in (fleet.group_ami_id, fleet.default_ami_id, *fleet.instances) if a})
        if seen:
            reasons.append(f"no healthy release recorded, but the fleet runs {', '.join(seen)}")
        return reasons
    if (
        live.launch_template_id
        and fleet.launch_template_id
        and live.launch_template_id != fleet.launch_template_id
    ):
        reasons.append(
            f"the group launches from template {fleet.launch_template_id}, the ledger's live release "
            f"from {live.launch_template_id}"
        )
    if fleet.group_ami_id != ami:
        reasons.append(
            f"the group's launch template version {fleet.group_version} runs {fleet.group_ami_id}, "
            f"the ledger's live release {ami}"
        )
    elif (
        live.launch_template_version
        and fleet.group_version
        and live.launch_template_version != fleet.group_version
    ):
        reasons.append(
            f"the group launches from version {fleet.group_version}, the ledger's live release from "
            f"{live.launch_template_version} (same AMI: its runtime or settings changed)"
        )
    if fleet.default_ami_id != ami:
        reasons.append(
            f"the launch template's default version {fleet.default_version} runs {fleet.default_ami_id}"
        )
    others = {a: n for a, n in sorted(fleet.instances.items()) if a != ami}
    if others:
        reasons.append("in-service instances run " + ", ".join(f"{a} ({n})" for a, n in others.items()))
    if not fleet.instances and fleet.desired:
        reasons.append(f"no instance in service (desired {fleet.desired})")
    return reasons


def release_view(release: Release | None) -> dict[str, Any] | None:
    if release is None:
        return None
    return {
        "id": release.id,
        "kind": release.kind,
        "ami_id": release.ami_id,
        "version": release.version,
        "outcome": release.outcome,
        "at": release.at,
        "by": release.by,
        "reason": release.reason,
    }


class EnvironmentStatus:
    """The status of one environment, read with that environment's AWS."""

    def __init__(self, project: Project, env: Environment, aws: AWS) -> None:
        self.env = env
        self.aws = aws
        state = project.settings.state
        self.ledger = Ledger(aws, table=state.table, app=project.app.name, env=env.name)
        self.lock = Lock(aws, table=state.table, app=project.app.name, env=env.name, purpose="status")
        self.lock.table = self.ledger.table  # one table, described once

    def scan(self) -> tuple[Release | None, Release | None, Release | None]:
        """(newest release, live release, newest release that names a fleet) in one pass that
        stops at the live release: usually one page of the ledger."""
        newest = live = fleet_ref = None
        for release in self.ledger.iter_releases():
            newest = newest or release
            if fleet_ref is None and release.asg_name:
                fleet_ref = release
            if release.outcome == "healthy" and release.kind in FLEET_KINDS:
                live = release
                break
        return newest, live, (live if live is not None and live.asg_name else fleet_ref)

    def read(self) -> dict[str, Any]:
        newest = live = ref = None
        pin = lock = None
        if self.ledger.table.exists():  # no state table in its account and region: never deployed
            newest, live, ref = self.scan()
            pin = self.ledger.pin()
            lock = self.lock.holder()
        fleet = read_fleet(self.aws, ref.asg_name) if ref is not None and ref.asg_name else None
        reasons = drift(live, fleet)
        running = {live.ami_id} if live is not None and live.ami_id else set()
        if fleet is not None:
            running |= {a for a in (fleet.group_ami_id, fleet.default_ami_id, *fleet.instances) if a}
        s = self.env.settings.aws
        return {
            "env": self.env.name,
            "account_id": s.account_id,
            "region": s.region,
            "deployed": live is not None,
            "ami_id": live.ami_id if live else None,
            "version": live.version if live else None,
            "git_sha": live.git_sha if live else None,
            "base_ami_id": live.base_ami_id if live else None,  # a layered image: the base it runs on
            "deployed_at": (live.healthy_at or live.at) if live else None,
            "by": live.by if live else None,
            "kind": live.kind if live else None,
            "color": live.color if live else None,  # blue_green: the color users reach
            "release_id": live.id if live else None,
            "pinned": pin,
            "drift": bool(reasons),
            "drift_reasons": reasons,
            "fleet": fleet.as_dict() if fleet else None,
            "revoked": self.revoked(running - {"?"}),
            "lock": lock,
            "unfinished": release_view(newest)
            if newest is not None and newest.outcome in UNFINISHED
            else None,
            "error": None,
        }

    def revoked(self, running: set[str]) -> list[dict[str, Any]]:
        """The revoked AMIs among those the environment runs (one call): who, when, why."""
        if not running:
            return []
        found = images.many(self.aws.client("ec2"), self.aws.region, ids=running, IncludeDisabled=True)
        return [{"ami_id": i.id, **i.revoked} for i in found if i.revoked is not None]


def unreadable(env: Environment, exc: BakerError) -> dict[str, Any]:
    """One environment that could not be read: the others are still worth showing."""
    s = env.settings.aws
    return {
        "env": env.name,
        "account_id": s.account_id,
        "region": s.region,
        "deployed": None,
        "ami_id": None,
        "version": None,
        "git_sha": None,
        "base_ami_id": None,
        "deployed_at": None,
        "pinned": None,
        "drift": None,
        "error": exc.message,
    }


class Status:
    """Every named environment, concurrently."""

    def __init__(
        self, project: Project, envs: Sequence[Environment], aws_for: Callable[[Environment], AWS]
    ) -> None:
        self.project = project
        self.envs = list(envs)
        self.aws_for = aws_for

    def one(self, env: Environment) -> dict[str, Any]:
        try:
            return EnvironmentStatus(self.project, env, self.aws_for(env)).read()
        except BakerError as exc:
            log.warning("%s: %s", env.name, exc.message)
            return unreadable(env, exc)

    def read(self) -> dict[str, Any]:
        if not self.envs:
            return {"environments": []}
        with ThreadPoolExecutor(max_workers=min(8, len(self.envs))) as pool:
            found = list(pool.map(self.one, self.envs))
        return {"environments": found}


def fail_on_revoked(result: dict[str, Any]) -> None:
    """``status --fail-on revoked``: refuse (exit 6) while any environment runs a revoked AMI,
    naming each, for a CI alarm."""
    running = [e for e in result["environments"] if e.get("revoked")]
    if not running:
        return
    said = "; ".join(
        f"{e['env']} runs {r['ami_id']} (revoked by {r['by']} at {r['at']}: {r['reason']!r})"
        for e in running
        for r in e["revoked"]
    )
    raise Refused(
        f"refused by policy [revoked]: {len(running)} environment(s) run a revoked AMI: {said}",
        details={**result, "rule": "revoked", "revoked_envs": [e["env"] for e in running]},
    )
