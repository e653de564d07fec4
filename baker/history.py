"""history: what an environment ran, newest first, straight from the release ledger.

A release's full record (runtime values included) stays in the ledger; history shows what an
operator reads and a script compares: the runtime as a count of keys, not its values, so that
history output can be pasted into a ticket.
"""

from __future__ import annotations

from typing import Any

from baker.ledger import Ledger, Release


def entry(release: Release) -> dict[str, Any]:
    """The history row of one release (DESIGN.md's keys first)."""
    return {
        "id": release.id,
        "kind": release.kind,
        "ami_id": release.ami_id,
        "version": release.version,
        "git_sha": release.git_sha,
        "base_ami_id": release.base_ami_id,
        "outcome": release.outcome,
        "at": release.at,
        "by": release.by,
        "previous_ami_id": release.previous_ami_id,
        "reason": release.reason,
        "pin_reason": release.pin_reason,
        "runtime_keys": len(release.runtime or {}),
        "promoted_from": release.promoted_from,
        "rollback_of": release.rollback_of,
        "healthy_at": release.healthy_at,
        "asg_name": release.asg_name,
        "launch_template_id": release.launch_template_id,
        "launch_template_version": release.launch_template_version,
        "color": release.color,
    }


class History:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def read(self, limit: int | None = None) -> dict[str, Any]:
        """The newest ``limit`` releases (all of them when None): reads only the pages it needs."""
        releases = self.ledger.releases(limit=limit)
        return {"env": self.ledger.env, "releases": [entry(r) for r in releases]}
