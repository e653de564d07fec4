"""Deploy: Terraform handoff, a health-gated rollout, automatic rollback, all under one lock.

A release is an AMI *and* the environment's runtime configuration: Terraform puts both into a new
launch template version (the runtime as user data that cloud-init writes at first boot), and an
instance refresh rolls the group onto it. Terraform's ``aws_autoscaling_group`` returns as soon as
a refresh is accepted (terraform-provider-aws #42355), so baker waits itself (baker/health.py).
On failure it rolls back (baker/rollback.py) to the previous *good* release from the ledger, its
AMI and its runtime, through the same path. The deploy lock is held from before ``terraform init``
to the end of the wait (and of a rollback); the ledger gets the intent before the apply and the
outcome after. Every verb asks the policy gate (baker/policy.py) first, and again for the pin
once the lock is held.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from baker import images
from baker.aws import AWS, error_code
from baker.bluegreen import BlueGreen, Colors
from baker.config import VARIABLES, Environment, Project, resolve_secret_refs, secret_values
from baker.errors import AWSError, BakerError, Interrupted, Refused, RollbackFailed
from baker.health import Rollout, Watch, assess, duration
from baker.images import Image
from baker.ledger import Ledger, Lock, Release, lock_for
from baker.policy import Change, Gate
from baker.provenance import iso, utc_now
from baker.terraform import Plan, Terraform, backend_config, find_mirror

log = logging.getLogger("baker")

__all__ = ["Deploy", "Handoff", "Options", "Rollout", "Watch", "assess", "duration", "gate", "plan_text"]

#: resources an AMI change must never delete or replace (the fleet, its load balancer and target group)
PROTECTED_TYPES = (
    "aws_autoscaling_group",
    "aws_lb",
    "aws_alb",
    "aws_lb_target_group",
    "aws_alb_target_group",
)


# ---------------------------------------------------------------- the plan gate


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


def terraform_for(project: Project, env: Environment, aws: AWS, *, local: bool = False) -> Terraform:
    """The environment's Terraform: its own working directory, backend and provider mirror."""
    s = project.settings
    backend = env.settings.deploy.backend
    return Terraform(
        module_dir=project.path(s.paths.terraform),
        work_dir=project.path(s.paths.build) / "terraform" / env.name,
        binary=s.terraform.binary,
        env=aws.env_vars(),
        child_env=aws.child_env,
        backend=backend_config(backend, region=aws.region, endpoint=aws.endpoint_url if local else None)
        if backend
        else None,
        mirror=find_mirror(s.terraform.plugin_mirror),
        timeout=s.terraform.timeout,
    )


# ---------------------------------------------------------------- the Terraform handoff


class Handoff:
    """The Terraform side of one environment: its variables, plan, apply and outputs."""

    def __init__(
        self, project: Project, env: Environment, aws: AWS, *, local: bool, terraform: Terraform
    ) -> None:
        self.project, self.env, self.aws, self.local = project, env, aws, local
        self.terraform = terraform
        self._initialized = False

    def variables(
        self, ami_id: str, runtime: Mapping[str, str], blue_green: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The module's variables; ``blue_green``: the colors, live color and weights (baker/bluegreen.py).
        A rolling environment gets exactly the variables it always got."""
        d = self.env.settings.deploy
        out: dict[str, Any] = {"name": f"{self.project.app.name}-{self.env.name}", **self.user_variables()}
        out.update(
            {
                "image_id": ami_id,
                "runtime_env": dict(runtime),
                "runtime_env_file": self.project.app.deb.runtime_env_file,
                "min_healthy_percentage": d.min_healthy_percent,
                "instance_warmup": d.instance_warmup,
                "region": self.aws.region,
            }
        )
        if d.strategy == "blue_green":
            out.update({"strategy": "blue_green", **(blue_green or {})})
        if self.local:
            out.update(
                {
                    "skip_credentials_validation": True,
                    "skip_requesting_account_id": True,
                    "skip_metadata_api_check": True,
                    "skip_region_validation": True,
                }
            )
        return out

    def user_variables(self) -> dict[str, Any]:
        """``deploy.variables`` with their secret references (``db_password: {env: NAME}``) read."""
        return resolve_secret_refs(self.env.settings.deploy.variables, self.project.root)

    def secrets(self, variables: Mapping[str, Any]) -> list[str]:
        """The values Terraform's output must never show: those of secret-bearing variables."""
        return secret_values(
            {k: v for k, v in variables.items() if k in self.env.settings.deploy.variables}, VARIABLES
        )

    def ensure_backend(self) -> None:
        """The local cloud starts empty: create the state bucket (versioned) the first time."""
        backend = self.env.settings.deploy.backend
        if not (self.local and backend):
            return
        region = backend.region or self.aws.region
        s3 = self.aws.client("s3", region)
        try:
            # a listing under the state's own prefix, which a least-privilege role may make (HeadBucket
            # needs s3:ListBucket with no prefix: examples/iam/deploy.json grants it for the prefix only)
            folder, slash, _ = backend.key.rpartition("/")
            s3.list_objects_v2(Bucket=backend.bucket, Prefix=folder + slash, MaxKeys=1)
            return
        except AWSError as exc:
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        kwargs: dict[str, Any] = {"Bucket": backend.bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        s3.put_bucket_versioning(Bucket=backend.bucket, VersioningConfiguration={"Status": "Enabled"})

    def init(self) -> None:
        if not self._initialized:
            self.ensure_backend()
            self.terraform.init()
            self._initialized = True

    def plan(
        self, ami_id: str, runtime: Mapping[str, str], blue_green: Mapping[str, Any] | None = None
    ) -> Plan:
        self.init()
        variables = self.variables(ami_id, runtime, blue_green)
        return self.terraform.plan(variables, secrets=self.secrets(variables))

    def outputs(self) -> dict[str, Any]:
        """What Terraform last applied ({} before the first apply, or when it cannot say)."""
        try:
            self.init()
            return self.terraform.outputs()
        except BakerError as exc:
            log.debug("terraform output: %s", exc.message)
            return {}


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


@dataclass
class Options:
    """How one rollout runs (the CLI's --timeout, --no-rollback, --allow-replace)."""

    timeout: int | None = None
    rollback: bool = True
    allow_replace: bool = False


class Deploy:
    """Point an environment's fleet at a release (AMI + runtime) and wait until it is healthy, or
    roll back. Every verb that changes what runs (deploy, release, promote, pin, rollback) goes
    through ``run``."""

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
        self.poll_min, self.poll_max = poll_min, poll_max
        #: monotonic times of this run: started, applied, first seen healthy (for the benchmark)
        self.started = self.applied_at = 0.0
        self.healthy_at: float | None = None
        #: releases whose intent is written and whose outcome is not yet (closed on Ctrl-C)
        self._open: list[Release] = []
        #: the watch of the rollout under way (its refresh is cancelled on Ctrl-C)
        self._watch: Watch | None = None
        #: instance refreshes of the group that existed before the last apply
        self._known: frozenset[str] = frozenset()
        #: blue/green: the colors as they were before this run's rollout (what a rollback goes back to)
        self.bg_before: Colors | None = None
        #: blue/green: the last rollback moved the weights back and launched nothing
        self.bg_by_weights = False
        self.on_poll: Callable[[Rollout], None] | None = None

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
        )

    def watch(self, outputs: Mapping[str, Any], known: frozenset[str] = frozenset()) -> Watch:
        return Watch(
            self.aws,
            outputs["asg_name"],
            outputs["target_group_arn"],
            poll_min=self.poll_min,
            poll_max=self.poll_max,
            known_refreshes=known,
            on_poll=self.on_poll,
            unhealthy_timeout=self.env.settings.deploy.unhealthy_timeout,
        )

    def test_route(self, colors: Colors) -> tuple[str | None, str]:
        """Blue/green: the base URL of the test listener, or None and why nothing answers on it.
        The local cloud's listeners answer on loopback ports of their own (baker/local/lb.py)."""
        if not self.local:
            if colors.lb_dns_name and colors.test_port:
                return f"http://{colors.lb_dns_name}:{colors.test_port}", ""
            return None, "the load balancer has no DNS name"
        if not (colors.test_listener_arn and self.aws.endpoint_url):
            return None, "no test listener"
        from baker.local import cloud

        found = cloud.listener(self.aws.endpoint_url, colors.test_listener_arn)
        if found is None:
            return None, "the local load balancer does not serve the test listener"
        if not found.get("healthy_targets"):
            # healthy by the emulator's API, yet no live target: instances of an AMI whose content
            # this local cloud does not hold are records only, and nothing answers for them
            return None, "no live instance behind the test route (record-only instances)"
        return str(found["url"]), ""

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
        self.started = time.monotonic()
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
        }
        if dry_run:
            return self._planned(result, runtime, options)
        health_timeout = options.timeout or self.env.settings.deploy.health_timeout
        with _sigterm_as_interrupt(), self.lock(f"{kind} {ami_id}") as lock:
            release: Release | None = None
            try:
                self.gate.check_pin(change)  # again: someone may have pinned while we waited
                self._close_abandoned(lock)
                release = self.ledger.new(
                    kind,
                    ami_id,
                    version=image.version,
                    git_sha=image.git_sha,
                    previous_ami_id=self._previous(result),
                    runtime=runtime,
                    promoted_from=promoted_from,
                    pin_reason=pin_reason,
                )
                result["release_id"] = release.id
                state, failure = self.roll(release, options.allow_replace, health_timeout, result)
                result["instances"] = state.instances
                if failure is None:
                    return self._healthy(release, result, on_healthy)
                release.outcome, release.reason = "failed", failure
                result["reason"] = failure
                log.warning("%s of %s to %s failed: %s", kind, ami_id, self.env.name, failure)
                from baker.rollback import Rollback

                try:
                    self._close(release)
                    return Rollback(self).after_failure(
                        release, state, result, options=options, health_timeout=health_timeout
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
        blue_green = BlueGreen(self).planned(result["ami_id"], runtime, result) if self.blue_green else None
        plan = self.handoff.plan(result["ami_id"], runtime, blue_green)
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
        fleet_ami = self.fleet_ami()
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
        self.healthy_at = time.monotonic()
        result["seconds"] = {
            "apply": round(self.applied_at - self.started, 1),
            "wait": round(self.healthy_at - self.applied_at, 1),
            "total": round(self.healthy_at - self.started, 1),
        }
        release.outcome, release.healthy_at = "healthy", iso(utc_now())
        self._close(release)
        if on_healthy is not None:
            result.update(on_healthy(release) or {})
        result["outcome"] = "healthy"
        log.info("%s is healthy on %s", self.env.name, release.ami_id)
        return result

    @property
    def blue_green(self) -> bool:
        return self.env.settings.deploy.strategy == "blue_green"

    def roll(
        self, release: Release, allow_replace: bool, health_timeout: int, result: dict[str, Any]
    ) -> tuple[Rollout, str | None]:
        """Plan and gate, write the intent, apply, wait: one rollout of one release (blue/green:
        the idle color's, tested and given the traffic, baker/bluegreen.py)."""
        if self.blue_green:
            return BlueGreen(self).roll(release, allow_replace, health_timeout, result)
        assert release.ami_id is not None
        outputs = self.apply(release, allow_replace, result)
        watch = self._watch = self.watch(outputs, self._known)
        applied = self.applied_at = time.monotonic()
        state, failure = watch.wait(release.ami_id, applied + health_timeout, started=applied)
        self._watch = None
        return state, failure

    def _back_to_rolling(self, applied: Mapping[str, Any]) -> None:
        """From blue_green back to rolling, the rolling fleet is blue: refuse while blue does not
        serve everyone at capacity (the switch would move users onto it at once)."""
        colors = Colors.from_outputs(applied)
        if colors is None or self.blue_green:
            return
        blue = colors.fleets["blue"]
        if colors.live == "blue" and colors.weights.get("blue") == 100 and blue.capacity > 0:
            return
        origin = self.env.origin("deploy", "strategy")
        raise Refused(
            f"switching deploy.strategy from blue_green to rolling ({origin}): "
            f"the rolling fleet is blue, and {colors.live} is live (blue: {blue.capacity} instances, "
            f"weight {colors.weights.get('blue', 0)}). Release onto blue with blue_green first "
            f"(or 'baker rollback -e {self.env.name}' to it), then switch",
            details={
                "outcome": "refused",
                "rule": "plan",
                "strategy_from": "blue_green",
                "strategy_to": "rolling",
            },
        )

    def apply(
        self,
        release: Release,
        allow_replace: bool,
        result: dict[str, Any],
        blue_green: Mapping[str, Any] | None = None,
        *,
        before: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Plan and gate, write the intent, apply; returns Terraform's outputs after the apply.
        The refreshes that existed before it are kept in ``_known`` (ours is the newest other)."""
        assert release.ami_id is not None
        applied = self.handoff.outputs()
        self._back_to_rolling(applied)
        plan = self.handoff.plan(release.ami_id, release.runtime, blue_green)
        try:
            gate(plan, allow_replace=allow_replace, never_served=self.ledger.live() is None)
        except Refused as exc:
            self.terraform.discard(plan)
            exc.details.update(
                {"env": self.env.name, "ami_id": release.ami_id, "previous_ami_id": release.previous_ami_id}
            )
            was = applied_strategy(applied)
            wanted = self.env.settings.deploy.strategy
            if was is None or was == wanted:
                raise
            origin = self.env.origin("deploy", "strategy")
            raise Refused(
                f"switching deploy.strategy from {was} to {wanted} ({origin}) replaces the fleet: "
                f"{exc.message}. README 'Switching strategies' says how to move without downtime",
                details={**exc.details, "strategy_from": was, "strategy_to": wanted},
            ) from None
        before = applied if before is None else before
        self._known = frozenset()
        if before.get("asg_name"):
            with contextlib.suppress(AWSError):
                self._known = frozenset(r["InstanceRefreshId"] for r in self.watch(before).refreshes())
        self.ledger.write(release)
        if all(r.id != release.id for r in self._open):
            self._open.append(release)
        log.info("applying: %s", plan_text(plan).splitlines()[0])
        self.terraform.apply(plan)
        outputs = self.terraform.outputs()
        release.asg_name = outputs.get("asg_name")
        release.launch_template_id = outputs.get("launch_template_id")
        version = outputs.get("launch_template_version")
        release.launch_template_version = str(version) if version is not None else None
        self.ledger.write(release)
        result.update(
            {
                "asg_name": release.asg_name,
                "target_group_arn": outputs.get("target_group_arn"),
                "launch_template_id": release.launch_template_id,
                "launch_template_version": release.launch_template_version,
                "plan": plan.summary(),
            }
        )
        return outputs

    def _close(self, release: Release) -> None:
        """Write a release's outcome; it is no longer open."""
        self.ledger.write(release)
        self._open = [r for r in self._open if r.id != release.id]

    def break_lock(self) -> dict[str, Any]:
        """``unlock --force``: break the lock whoever holds it, then (holding it ourselves) close
        what its dead owner left in_progress as abandoned, with what is live."""
        lock = self.lock("unlock --force")
        was = lock.force_release()
        with lock:
            abandoned = self._close_abandoned(lock)
        return {"released": was, "abandoned": [r.as_dict() for r in abandoned]}

    def _close_abandoned(self, lock: Lock) -> list[Release]:
        """Under the lock, a release still in_progress belongs to a run that died (its lease ran
        out, or the lock was broken): close it as abandoned, saying what is live."""
        stale = self.ledger.open()
        if not stale:
            return []
        live = self.live_words()
        holder = (lock.took_over or {}).get("owner")
        for release in stale:
            release.outcome = "abandoned"
            release.reason = (
                f"its run ended without an outcome{f' (lock holder {holder})' if holder else ''}; "
                f"closed by {lock.owner} at {iso(utc_now())}; live then: {live}"
            )
            self.ledger.write(release)
            log.warning(
                "release %s (%s of %s) was abandoned by a run that died; live: %s",
                release.id,
                release.kind,
                release.ami_id,
                live,
            )
        return stale

    def fleet_ami(self) -> str | None:
        """The AMI most in-service instances of the fleet run (the launch template's when none
        is in service); None before the first apply."""
        out = self.handoff.outputs()
        if not out.get("asg_name"):
            return None
        try:
            state = self.watch(out).look(str(out.get("image_id") or ""))
        except BakerError as exc:
            log.warning("cannot read the fleet: %s", exc.message)
            return out.get("image_id")
        counts: dict[str, int] = {}
        for inst in state.instances.values():
            if inst.get("lifecycle") == "InService" and inst.get("ami_id"):
                counts[inst["ami_id"]] = counts.get(inst["ami_id"], 0) + 1
        return max(counts, key=lambda a: counts[a]) if counts else out.get("image_id")

    def live_words(self) -> str:
        """What runs, in words: launch template version and image, instances per AMI, refresh."""
        out = self.handoff.outputs()
        if not out.get("asg_name"):
            return "nothing (no fleet yet)"
        try:
            state = self.watch(out).look(str(out.get("image_id") or ""))
        except BakerError as exc:
            return f"unknown ({exc.message})"
        template = (
            f"launch template {out.get('launch_template_id')} version {out.get('launch_template_version')} "
            f"on {out.get('image_id')}"
        )
        refresh = f"; refresh {state.refresh_status}" if state.refresh_status else ""
        return f"{template}; {state.live()}{refresh}"

    def _interrupted(self, release: Release | None, result: dict[str, Any]) -> Interrupted:
        """Ctrl-C or SIGTERM: stop the refresh we started, record what is live, say it."""
        cancelled = None
        watch = self._watch
        if watch is not None:
            try:
                self.aws.client("autoscaling").cancel_instance_refresh(AutoScalingGroupName=watch.asg_name)
                cancelled = watch.asg_name
            except (BakerError, KeyboardInterrupt) as exc:
                log.warning("could not cancel the instance refresh of %s: %s", watch.asg_name, exc)
        live = "unknown"
        try:
            live = self.live_words()
        except (BakerError, KeyboardInterrupt) as exc:
            log.warning("could not read what is live: %s", exc)
        recorded = False
        for rec in list(self._open):
            rec.outcome = "interrupted"
            rec.reason = f"interrupted; {'refresh cancelled; ' if cancelled else ''}live: {live}"
            try:
                self._close(rec)
                recorded = True
            except (BakerError, KeyboardInterrupt) as exc:
                log.error("could not record release %s as interrupted: %s", rec.id, exc)
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
