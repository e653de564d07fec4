"""The automatic rollback: a deploy whose health gate failed goes back to the previous good
release, its AMI *and* its runtime configuration, under that deploy's lock, through the
strategy's own way back (a refresh, or blue/green's weights)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from baker.aws import error_code
from baker.deploy.context import Context, Strategy
from baker.errors import BakerError, Interrupted, RollbackFailed, RolledBack
from baker.health import Rollout
from baker.ledger import Release
from baker.provenance import iso, utc_now

log = logging.getLogger("baker")


@dataclass
class Options:
    """How one rollout runs (the CLI's --timeout, --no-rollback, --allow-replace)."""

    timeout: int | None = None
    rollback: bool = True
    allow_replace: bool = False


def after_failure(
    ctx: Context,
    strategy: Strategy,
    failed: Release,
    state: Rollout,
    result: dict[str, Any],
    *,
    options: Options,
    health_timeout: int,
    live_words: Callable[[], str],
) -> dict[str, Any]:
    """The deploy of ``failed`` did not get healthy: roll back under its lock, or say why not.

    Always raises: RolledBack (exit 4) when the previous release is live and healthy again,
    RollbackFailed (exit 5) otherwise, with what is live.
    """
    ledger, records = ctx.ledger, ctx.records
    ami_id, failure = failed.ami_id, failed.reason
    name = ctx.env.name
    if not options.rollback:
        result["outcome"] = "failed"
        raise RollbackFailed(
            f"{failed.kind} of {ami_id} to {name} failed ({failure}); --no-rollback: left as it is. "
            f"Live: {state.live()}",
            details=result,
        )
    target = ledger.last_good_besides(failed)
    if target is None or target.ami_id is None:
        result["outcome"] = "failed"
        revoked = ledger.last_good_besides(failed, skip_revoked=False)
        why = (
            f"every earlier good release is of a revoked AMI (the newest: {revoked.ami_id}; see "
            f"'baker history -e {name}')"
            if revoked is not None
            else "there is no previous good release to roll back to (first deploy)"
        )
        raise RollbackFailed(
            f"{failed.kind} of {ami_id} to {name} failed ({failure}) and {why}. Live: {state.live()}",
            details=result,
        )
    good = target.ami_id
    log.warning("rolling %s back to %s", name, good)
    if failed.asg_name:
        try:
            ctx.aws.client("autoscaling").cancel_instance_refresh(AutoScalingGroupName=failed.asg_name)
            log.info("cancelled the instance refresh of %s", failed.asg_name)
        except BakerError as exc:
            if error_code(exc) == "ActiveInstanceRefreshNotFound":
                log.debug("the instance refresh of %s had already ended", failed.asg_name)
            else:
                log.warning("could not cancel the instance refresh of %s: %s", failed.asg_name, exc.message)
    back = ledger.new(
        "rollback",
        good,
        version=target.version,
        git_sha=target.git_sha,
        base_ami_id=target.base_ami_id,
        previous_ami_id=ami_id,
        runtime=target.runtime,
        rollback_of=failed.id,
    )
    rb: dict[str, Any] = {
        "ami_id": good,
        "release_id": back.id,
        "runtime_restored": target.runtime != failed.runtime,
    }
    result["rollback"] = rb
    back_state: Rollout | None = None
    try:
        back_state, back_failure = strategy.roll_back(back, failed, options.allow_replace, health_timeout)
    except (KeyboardInterrupt, Interrupted):
        raise
    except BakerError as exc:
        back_failure = f"{type(exc).__name__}: {exc.message}"
    if back_state is not None:
        result["instances"] = back_state.instances
    rb.update(strategy.rollback_details())
    if back_failure is None:
        back.outcome, back.healthy_at = "healthy", iso(utc_now())
        records.close(back)
        failed.outcome = "rolled_back"
        records.close(failed)
        result["outcome"] = "rolled_back"
        rb["outcome"] = "healthy"
        raise RolledBack(
            f"{failed.kind} of {ami_id} to {name} failed ({failure}); rolled back: {good} is live and "
            f"healthy again",
            details=result,
        )
    back.outcome, back.reason = "failed", back_failure
    failed.outcome = "rollback_failed"
    for rec in (back, failed):
        try:
            records.close(rec)
        except BakerError as exc:
            log.error("could not record release %s as %s: %s", rec.id, rec.outcome, exc.message)
    live_now = back_state.live() if back_state else live_words()
    result["outcome"] = "rollback_failed"
    rb.update(outcome="failed", reason=back_failure)
    raise RollbackFailed(
        f"{failed.kind} of {ami_id} to {name} failed ({failure}) and the rollback to {good} failed too "
        f"({back_failure}). Live: {live_now}. A human is needed",
        details=result,
    )
