"""The rolling strategy (``deploy.strategy: rolling``, the default): the launch template gets the
new AMI and runtime, an instance refresh replaces the instances in batches (min healthy percent),
and baker waits on target health. A rollback is another refresh, to the previous good release."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from baker.deploy.bluegreen import refuse_leaving_blue_green
from baker.deploy.context import Context
from baker.errors import AWSError, UsageError
from baker.health import Rollout
from baker.ledger import Release

log = logging.getLogger("baker")


class Rolling:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def planned(
        self, ami_id: str, runtime: Mapping[str, str], result: dict[str, Any]
    ) -> dict[str, Any] | None:
        return None

    def traffic_first(self, release: Release, result: dict[str, Any]) -> bool:
        return False  # one group: users move as its instances are replaced

    def roll(
        self, release: Release, allow_replace: bool, health_timeout: int, result: dict[str, Any]
    ) -> tuple[Rollout, str | None]:
        """Plan and gate, write the intent, apply, wait on the refresh and target health."""
        ctx = self.ctx
        assert release.ami_id is not None
        before = ctx.handoff.outputs()
        refuse_leaving_blue_green(ctx.env, before)
        known = self._refreshes(before)
        outputs = ctx.handoff.apply(release, ctx.records, allow_replace=allow_replace, result=result)
        watch = ctx.progress.watching = ctx.watch(outputs["asg_name"], outputs["target_group_arn"], known)
        applied = ctx.progress.applied_at = ctx.clock.monotonic()
        state, failure = watch.wait(release.ami_id, applied + health_timeout, started=applied)
        ctx.progress.watching = None
        return state, failure

    def _refreshes(self, outputs: Mapping[str, Any]) -> frozenset[str]:
        """The group's instance refreshes before the apply: ours is the newest other one."""
        if not outputs.get("asg_name"):
            return frozenset()
        try:
            watch = self.ctx.watch(outputs["asg_name"], outputs["target_group_arn"])
            return frozenset(r["InstanceRefreshId"] for r in watch.refreshes())
        except AWSError:
            return frozenset()

    def roll_back(
        self, back: Release, failed: Release, allow_replace: bool, health_timeout: int
    ) -> tuple[Rollout | None, str | None]:
        return self.roll(back, allow_replace, health_timeout, {})

    def rollback_details(self) -> dict[str, Any]:
        return {}

    def retire(self, *, force: bool = False) -> dict[str, Any]:
        env = self.ctx.env
        raise UsageError(f"{env.name} deploys {env.settings.deploy.strategy}: retire is for blue_green")
