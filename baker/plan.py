"""Terraform's plan as baker reads it (``show -json``), and the gate a deploy's plan must pass:
an AMI change updates the launch template and the group, and never deletes or replaces the fleet,
its load balancer or its target group."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baker.errors import Refused

log = logging.getLogger("baker")


@dataclass(frozen=True)
class Change:
    address: str
    type: str
    actions: tuple[str, ...]
    #: attributes whose value changes (top level), for the summary
    attributes: tuple[str, ...] = ()
    #: Terraform's reason for a replacement (``replace_because_tainted``, ...), when it gives one
    reason: str | None = None

    @property
    def tainted(self) -> bool:
        return self.reason == "replace_because_tainted"

    @property
    def kind(self) -> str:
        """create, update, delete, replace, read or no-op."""
        acts = set(self.actions)
        if {"create", "delete"} <= acts:
            return "replace"
        return self.actions[0] if len(self.actions) == 1 else "+".join(self.actions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "type": self.type,
            "action": self.kind,
            "attributes": list(self.attributes) if self.kind == "update" else [],
        }


@dataclass(frozen=True)
class Plan:
    path: Path
    changes: tuple[Change, ...]
    #: the raw ``show -json`` document
    document: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "replace": 0, "delete": 0}
        for c in self.changes:
            if c.kind in out:
                out[c.kind] += 1
        return out

    @property
    def empty(self) -> bool:
        return not self.changes

    def summary(self) -> dict[str, Any]:
        return {"counts": self.counts, "changes": [c.as_dict() for c in self.changes]}


def _changed_attributes(before: Any, after: Any, unknown: Any) -> tuple[str, ...]:
    if not isinstance(after, dict):
        return ()
    before = before if isinstance(before, dict) else {}
    unknown = unknown if isinstance(unknown, dict) else {}
    keys = set(before) | set(after) | set(unknown)
    return tuple(sorted(k for k in keys if before.get(k) != after.get(k) or unknown.get(k)))


def parse_plan(document: dict[str, Any], path: Path | str = "") -> Plan:
    """The changes of a ``show -json`` plan document, no-ops and reads left out."""
    changes = []
    for rc in document.get("resource_changes", []):
        change = rc.get("change", {})
        actions = tuple(change.get("actions", []))
        if actions in (("no-op",), ("read",)) or not actions:
            continue
        attrs = _changed_attributes(change.get("before"), change.get("after"), change.get("after_unknown"))
        changes.append(
            Change(
                address=rc.get("address", ""),
                type=rc.get("type", ""),
                actions=actions,
                attributes=attrs,
                reason=rc.get("action_reason"),
            )
        )
    return Plan(path=Path(path), changes=tuple(changes), document=document)


# ---------------------------------------------------------------- diagnostics


# ---------------------------------------------------------------- the plan gate

#: resources an AMI change must never delete or replace (the fleet, its load balancer and target group)
PROTECTED_TYPES = (
    "aws_autoscaling_group",
    "aws_lb",
    "aws_alb",
    "aws_lb_target_group",
    "aws_alb_target_group",
)


def gate(plan: Plan, *, allow_replace: bool = False, never_served: bool = False) -> list[str]:
    """Refuse a plan that would delete or replace the fleet, its load balancer or target group.

    ``never_served``: the environment has no healthy release yet, so a resource that an
    interrupted first create left tainted may be replaced (it never served anyone); anything else
    stays behind --allow-replace. Returns the addresses it let through or would have refused.
    """
    unsafe = [c for c in plan.changes if c.type in PROTECTED_TYPES and "delete" in c.actions]
    named = [f"{c.address} ({c.kind})" for c in unsafe]
    if never_served and unsafe and all(c.tainted for c in unsafe):
        log.warning(
            "replacing %s: tainted by an interrupted first create, and this environment never had a "
            "healthy release, so nothing that served is replaced",
            ", ".join(named),
        )
        return named
    if unsafe and not allow_replace:
        raise Refused(
            f"the Terraform plan would destroy: {', '.join(named)}; an AMI change only updates the launch "
            "template and the Auto Scaling group. Re-run with --allow-replace if that is really wanted",
            details={"outcome": "refused", "rule": "plan", "unsafe": named, "plan": plan.summary()},
        )
    return named


def applied_strategy(outputs: Mapping[str, Any]) -> str | None:
    """The strategy of what Terraform last applied (None before the first apply)."""
    if outputs.get("blue_green"):
        return "blue_green"
    return "rolling" if outputs.get("asg_name") else None


def plan_text(plan: Plan) -> str:
    """One line per change, Terraform's words: what --dry-run prints."""
    counts = plan.counts
    head = (
        f"plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['replace']} to replace, {counts['delete']} to delete"
    )
    lines = [head]
    for c in plan.changes:
        attrs = f" ({', '.join(c.attributes[:6])})" if c.kind == "update" and c.attributes else ""
        lines.append(f"  {c.kind:8} {c.address}{attrs}")
    return "\n".join(lines)
