"""Deploy: the verb around a strategy — the policy gate, the deploy lock, the ledger entry,
interrupts, and the automatic rollback.

A release is an AMI *and* the environment's runtime configuration: Terraform puts both into a new
launch template version (the runtime as user data that cloud-init writes at first boot), and the
strategy (``deploy.strategy``: baker/deploy/rolling.py, baker/deploy/bluegreen.py) moves the fleet
onto it. Terraform's ``aws_autoscaling_group`` returns as soon as a refresh is accepted
(terraform-provider-aws #42355), so baker waits itself (baker/health.py). On failure it rolls back
(baker/deploy/recovery.py) to the previous *good* release from the ledger, its AMI and its
runtime, through the strategy's way back. The deploy lock is held from before ``terraform init``
to the end of the wait (and of a rollback); the ledger gets the intent before the apply and the
outcome after. Every verb asks the policy gate (baker/policy.py) first, and again for the pin
once the lock is held.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from baker import images
from baker.aws import AWS
from baker.config import Environment, Project
from baker.deploy import recovery
from baker.deploy.context import Clock, Context, Progress, TestRoute
from baker.deploy.handoff import Handoff, terraform_for
from baker.deploy.live import LiveView
from baker.deploy.records import Records
from baker.deploy.recovery import Options
from baker.deploy.strategies import strategy_for
from baker.errors import AWSError, BakerError, Interrupted, RollbackFailed
from baker.health import Rollout, Watch
from baker.images import Image
from baker.ledger import Ledger, Lock, Release, lock_for
from baker.plan import Plan, gate, plan_text
from baker.policy import Change, Gate
from baker.provenance import iso, utc_now
from baker.terraform import Terraform

log = logging.getLogger("baker")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled) takes the same path as Ctrl-C: release, record, exit 130."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Deploy:
    """Point an environment's fleet at a release (AMI + runtime) and wait until it is healthy, or
    roll back. Every verb that changes what runs (deploy, release, promote, pin, rollback) goes
    through ``run``. ``test_route``: how a blue/green smoke check reaches the test listener (the
    CLI hands in the local cloud's; on AWS, the load balancer's DNS name)."""

    def __init__(
        self,
        project: Project,
        env: Environment,
        aws: AWS,
        *,
        local: bool = False,
        terraform: Terraform | None = None,
        poll_min: float = 2.0,
        poll_max: float = 15.0,
        test_route: TestRoute | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.project = project
        self.env = env
        self.aws = aws
        self.local = local
        self.app = project.app.name
        self.terraform = terraform or terraform_for(project, env, aws, local=local)
        self.handoff = Handoff(project, env, aws, local=local, terraform=self.terraform)
        self.ledger = Ledger(aws, table=project.settings.state.table, app=self.app, env=env.name)
        self.gate = Gate(env, self.ledger)
        self.context = Context(
            project=project,
            env=env,
            aws=aws,
            handoff=self.handoff,
            records=Records(self.ledger, lambda: self.live.words()),
            lock=self.lock,
            clock=clock or Clock(),
            poll_min=poll_min,
            poll_max=poll_max,
            test_route=test_route,
        )
        self.live = LiveView(aws, self.handoff, self.context.watch)
        #: how releases reach the fleet here, chosen once (``deploy.strategy``)
        self.strategy = strategy_for(self.context)

    # -- what benchmarks and tests follow

    @property
    def progress(self) -> Progress:
        return self.context.progress

    @property
    def on_poll(self) -> Callable[[Rollout], None] | None:
        return self.progress.on_poll

    @on_poll.setter
    def on_poll(self, callback: Callable[[Rollout], None] | None) -> None:
        self.progress.on_poll = callback

    @property
    def started(self) -> float:
        return self.progress.started

    @property
    def applied_at(self) -> float:
        return self.progress.applied_at

    @property
    def healthy_at(self) -> float | None:
        return self.progress.healthy_at

    # -- pieces

    def image(self, ami_id: str) -> Image:
        return images.require(self.aws.client("ec2"), images.check_id(ami_id), self.aws.region)

    def lock(self, purpose: str) -> Lock:
        s = self.project.settings.state
        return lock_for(
            self.aws,
            table=s.table,
            app=self.app,
            env=self.env.name,
            lease_seconds=s.lock_lease_seconds,
            purpose=purpose,
            clock=self.context.clock,
        )

    def watch(self, outputs: Mapping[str, Any], known: frozenset[str] = frozenset()) -> Watch:
        return self.context.watch(outputs["asg_name"], outputs["target_group_arn"], known)

    def plan(self, ami_id: str, runtime: Mapping[str, str], result: dict[str, Any] | None = None) -> Plan:
        """The Terraform plan a deploy of ``ami_id`` would apply first (the caller discards it)."""
        values = self.strategy.planned(ami_id, runtime, {} if result is None else result)
        return self.handoff.plan(ami_id, runtime, values)

    # -- the whole deploy

    def run(
        self,
        ami_id: str,
        *,
        kind: str = "deploy",
        runtime: Mapping[str, str] | None = None,
        options: Options | None = None,
        dry_run: bool = False,
        source_env: str | None = None,
        source_release: Release | None = None,
        promoted_from: dict[str, str] | None = None,
        on_healthy: Callable[[Release], dict[str, Any] | None] | None = None,
        pin_reason: str | None = None,
    ) -> dict[str, Any]:
        """Roll ``ami_id`` (with ``runtime``, by default the environment's ``runtime:``) out.

        ``kind`` is the verb (deploy, release, promote, pin, rollback): the policy gate's rules
        and the ledger entry follow it. ``on_healthy`` runs under the lock once the fleet is
        healthy (``pin`` writes the pin there).
        """
        options = options or Options()
        self.progress.started = self.context.clock.monotonic()
        self.gate.check_before_bake(kind)  # pinned or protected: refused before AWS is asked anything
        image = self.image(ami_id)
        change = Change(verb=kind, image=image, source_env=source_env, source_release=source_release)
        self.gate.check(change)
        runtime = dict(self.env.settings.runtime.env if runtime is None else runtime)
        live = self.ledger.live()
        result: dict[str, Any] = {
            "env": self.env.name,
            "kind": kind,
            "ami_id": ami_id,
            "previous_ami_id": live.ami_id if live else None,
            "outcome": None,
            "version": image.version,
            "git_sha": image.git_sha,
            "base_ami_id": image.base_ami,
        }
        if dry_run:
            return self._planned(result, runtime, options)
        health_timeout = options.timeout or self.env.settings.deploy.health_timeout
        records = self.context.records
        with _sigterm_as_interrupt(), self.lock(f"{kind} {ami_id}") as lock:
            release: Release | None = None
            try:
                self.gate.check_pin(change)  # again: someone may have pinned while we waited
                records.close_abandoned(lock)
                release = self.ledger.new(
                    kind,
                    ami_id,
                    version=image.version,
                    git_sha=image.git_sha,
                    base_ami_id=image.base_ami,
                    previous_ami_id=result["previous_ami_id"],
                    runtime=runtime,
                    promoted_from=promoted_from,
                    pin_reason=pin_reason,
                )
                result["release_id"] = release.id
                # users first (a blue/green rollback by weights); then what Terraform says
                self.strategy.traffic_first(release, result)
                release.previous_ami_id = self._previous(result)
                state, failure = self.strategy.roll(release, options.allow_replace, health_timeout, result)
                result["instances"] = state.instances
                if failure is None:
                    return self._healthy(release, result, on_healthy)
                release.outcome, release.reason = "failed", failure
                result["reason"] = failure
                log.warning("%s of %s to %s failed: %s", kind, ami_id, self.env.name, failure)
                try:
                    records.close(release)
                    return recovery.after_failure(
                        self.context,
                        self.strategy,
                        release,
                        state,
                        result,
                        options=options,
                        health_timeout=health_timeout,
                        live_words=self.live.words,
                    )
                except AWSError as exc:
                    # AWS failing us while we handle the failure (its state gone, the endpoint
                    # away): the failure itself is what the operator must read first
                    result["outcome"] = "rollback_failed"
                    raise RollbackFailed(
                        f"{kind} of {ami_id} to {self.env.name} failed ({failure}); handling that failed too "
                        f"({exc.message}): the ledger may not record it and no rollback was completed. "
                        f"Live when last seen: {state.live()}",
                        details={**result, "aws_error": exc.details.get("aws_error")},
                    ) from exc
            except (KeyboardInterrupt, Interrupted):
                raise self._interrupted(release, result) from None

    def _planned(self, result: dict[str, Any], runtime: dict[str, str], options: Options) -> dict[str, Any]:
        """--dry-run: the plan and the ledger writes a real run would make; nothing changes."""
        plan = self.plan(result["ami_id"], runtime, result)
        self.terraform.discard(plan)
        unsafe = gate(plan, allow_replace=True)
        result.update(
            {
                "outcome": "planned",
                "plan": plan.summary(),
                "plan_text": plan_text(plan),
                "would_refuse": bool(unsafe) and not options.allow_replace,
                "runtime": runtime,
                "ledger_writes": [
                    f"{self.ledger.table.name} {self.ledger.pk}: {result['kind']} of {result['ami_id']}, "
                    "in_progress, then its outcome"
                ],
            }
        )
        return result

    def _previous(self, result: dict[str, Any]) -> str | None:
        """What this release replaces: the ledger's live AMI, unless the fleet really runs another
        (changed outside baker, or an interrupted release), which then wins and is said."""
        live = self.ledger.live()
        previous = live.ami_id if live else None
        fleet_ami = self.live.ami()
        if fleet_ami and fleet_ami != previous:
            log.warning(
                "the fleet runs %s but the ledger's live release is %s (changed outside baker, or an "
                "interrupted release): %s is what this %s replaces",
                fleet_ami,
                previous,
                fleet_ami,
                result["kind"],
            )
            result["ledger_live_ami_id"] = previous
            previous = fleet_ami
        result["previous_ami_id"] = previous
        return previous

    def _healthy(
        self,
        release: Release,
        result: dict[str, Any],
        on_healthy: Callable[[Release], dict[str, Any] | None] | None,
    ) -> dict[str, Any]:
        progress = self.progress
        healthy_at = progress.healthy_at = self.context.clock.monotonic()
        result["seconds"] = {
            "apply": round(progress.applied_at - progress.started, 1),
            "wait": round(healthy_at - progress.applied_at, 1),
            "total": round(healthy_at - progress.started, 1),
        }
        release.outcome, release.healthy_at = "healthy", iso(utc_now())
        self.context.records.close(release)
        if on_healthy is not None:
            result.update(on_healthy(release) or {})
        result["outcome"] = "healthy"
        log.info("%s is healthy on %s", self.env.name, release.ami_id)
        return result

    # -- other verbs on the same environment

    def retire(self, *, force: bool = False) -> dict[str, Any]:
        """``baker retire``: what the strategy keeps for a rollback is given up (blue/green)."""
        return self.strategy.retire(force=force)

    def break_lock(self) -> dict[str, Any]:
        """``unlock --force``: break the lock whoever holds it, then (holding it ourselves) close
        what its dead owner left in_progress as abandoned, with what is live."""
        lock = self.lock("unlock --force")
        was = lock.force_release()
        with lock:
            abandoned = self.context.records.close_abandoned(lock)
        return {"released": was, "abandoned": [r.as_dict() for r in abandoned]}

    def fleet_ami(self) -> str | None:
        return self.live.ami()

    def live_words(self) -> str:
        return self.live.words()

    def _interrupted(self, release: Release | None, result: dict[str, Any]) -> Interrupted:
        """Ctrl-C or SIGTERM: stop the refresh we started, record what is live, say it."""
        cancelled = None
        watch = self.progress.watching
        if watch is not None:
            try:
                self.aws.client("autoscaling").cancel_instance_refresh(AutoScalingGroupName=watch.asg_name)
                cancelled = watch.asg_name
            except (BakerError, KeyboardInterrupt) as exc:
                log.warning("could not cancel the instance refresh of %s: %s", watch.asg_name, exc)
        live = "unknown"
        try:
            live = self.live.words()
        except (BakerError, KeyboardInterrupt) as exc:
            log.warning("could not read what is live: %s", exc)
        recorded = self.context.records.interrupt(
            f"interrupted; {'refresh cancelled; ' if cancelled else ''}live: {live}"
        )
        what = (
            f"release {release.id} of {release.ami_id} recorded as interrupted"
            if release is not None and recorded
            else "nothing was applied"
        )
        return Interrupted(
            f"interrupted; deploy lock released; {what}"
            f"{f'; instance refresh of {cancelled} cancelled' if cancelled else ''}; live: {live}",
            details={**result, "outcome": "interrupted", "live": live, "refresh_cancelled": bool(cancelled)},
        )
