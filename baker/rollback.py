"""Rollback: back to a good release, its AMI *and* its runtime configuration, through the same
rollout, lock and ledger as any deploy.

Two callers: a deploy whose health gate failed (``after_failure``, under that deploy's lock,
automatic unless --no-rollback), and ``baker rollback -e ENV [--to AMI]`` (``run``), which is
a deploy of kind ``rollback``. Re-applying today's broken runtime configuration with the old AMI
would not be a rollback, so the target's recorded runtime is what goes out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from baker.aws import error_code
from baker.bluegreen import BlueGreen
from baker.errors import BakerError, Interrupted, RollbackFailed, RolledBack, UsageError
from baker.health import Rollout
from baker.ledger import Release
from baker.provenance import iso, utc_now

if TYPE_CHECKING:
    from baker.deploy import Deploy, Options

log = logging.getLogger("baker")


class Rollback:
    def __init__(self, deploy: Deploy) -> None:
        self.deploy = deploy
        self.ledger = deploy.ledger
        self.env = deploy.env

    def target(self, *, to: str | None = None, exclude: str | None = None) -> Release:
        """The release to go back to: the newest healthy one on another AMI than ``exclude``, or
        the newest healthy release of ``to`` (which must have been healthy here before)."""
        if to is not None:
            found = self.ledger.healthy_on(to)
            if found is None:
                raise UsageError(
                    f"{to} was never healthy in {self.env.name}: rollback --to takes an AMI of an earlier "
                    f"healthy release (see 'baker history -e {self.env.name}')",
                    details={"ami_id": to, "env": self.env.name},
                )
            return found
        found = self.ledger.last_good(exclude_ami=exclude)
        if found is None:
            raise UsageError(
                f"{self.env.name} has no earlier healthy release on another AMI than {exclude} "
                "that is not revoked to roll back to",
                details={"env": self.env.name},
            )
        return found

    def run(
        self, *, to: str | None = None, options: Options | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """``baker rollback``: deploy the previous good release (or ``to``), kind ``rollback``."""
        live = self.ledger.live()
        target = self.target(to=to, exclude=None if to else (live.ami_id if live else None))
        assert target.ami_id is not None
        log.info(
            "rolling %s back to %s (release %s of %s)", self.env.name, target.ami_id, target.id, target.at
        )
        result = self.deploy.run(
            target.ami_id, kind="rollback", runtime=target.runtime, options=options, dry_run=dry_run
        )
        result["rollback_to_release"] = target.id
        return result

    def after_failure(
        self,
        failed: Release,
        state: Rollout,
        result: dict[str, Any],
        *,
        options: Options,
        health_timeout: int,
    ) -> dict[str, Any]:
        """The deploy of ``failed`` did not get healthy: roll back under its lock, or say why not.

        Always raises: RolledBack (exit 4) when the previous release is live and healthy again,
        RollbackFailed (exit 5) otherwise, with what is live.
        """
        deploy = self.deploy
        ami_id, failure = failed.ami_id, failed.reason
        name = self.env.name
        if not options.rollback:
            result["outcome"] = "failed"
            raise RollbackFailed(
                f"{failed.kind} of {ami_id} to {name} failed ({failure}); --no-rollback: left as it is. "
                f"Live: {state.live()}",
                details=result,
            )
        target = self.ledger.last_good_besides(failed)
        if target is None or target.ami_id is None:
            result["outcome"] = "failed"
            revoked = self.ledger.last_good_besides(failed, skip_revoked=False)
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
                deploy.aws.client("autoscaling").cancel_instance_refresh(AutoScalingGroupName=failed.asg_name)
                log.info("cancelled the instance refresh of %s", failed.asg_name)
            except BakerError as exc:
                if error_code(exc) == "ActiveInstanceRefreshNotFound":
                    log.debug("the instance refresh of %s had already ended", failed.asg_name)
                else:
                    log.warning(
                        "could not cancel the instance refresh of %s: %s", failed.asg_name, exc.message
                    )
        back = deploy.ledger.new(
            "rollback",
            good,
            version=target.version,
            git_sha=target.git_sha,
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
            if deploy.blue_green:  # the previous color kept its capacity: the weights go back
                back_state, back_failure = BlueGreen(deploy).roll_back(back, failed, health_timeout)
            else:
                back_state, back_failure = deploy.roll(back, options.allow_replace, health_timeout, {})
        except (KeyboardInterrupt, Interrupted):
            raise
        except BakerError as exc:
            back_failure = f"{type(exc).__name__}: {exc.message}"
        if back_state is not None:
            result["instances"] = back_state.instances
        if deploy.blue_green:
            rb["by_weights"] = deploy.bg_by_weights
        if back_failure is None:
            back.outcome, back.healthy_at = "healthy", iso(utc_now())
            deploy._close(back)
            failed.outcome = "rolled_back"
            deploy._close(failed)
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
                deploy._close(rec)
            except BakerError as exc:
                log.error("could not record release %s as %s: %s", rec.id, rec.outcome, exc.message)
        live_now = back_state.live() if back_state else deploy.live_words()
        result["outcome"] = "rollback_failed"
        rb.update(outcome="failed", reason=back_failure)
        raise RollbackFailed(
            f"{failed.kind} of {ami_id} to {name} failed ({failure}) and the rollback to {good} failed too "
            f"({back_failure}). Live: {live_now}. A human is needed",
            details=result,
        )
