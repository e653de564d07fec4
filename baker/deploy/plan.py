"""The plan gate: what a deploy's Terraform plan may change, and how a plan is shown."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from baker.errors import Refused
from baker.terraform import Plan

log = logging.getLogger("baker")

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
