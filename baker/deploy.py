"""Deploy: Terraform handoff, a health-gated rollout, automatic rollback, all under one lock.

Terraform's ``aws_autoscaling_group`` returns as soon as an instance refresh is accepted
(terraform-provider-aws #42355), so baker waits itself: it follows the refresh and the target
group until every desired instance runs the new AMI and is healthy. On failure it re-applies the
previous *good* release from the ledger through the same path (never the bad AMI again, unlike
the refresh's own auto-rollback, #34189). The deploy lock is held from the plan to the end of
the wait (and of a rollback); the ledger gets the intent before the apply and the outcome after.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from baker.aws import AWS, error_code
from baker.config import Environment, Project
from baker.errors import AWSError, BakerError, Interrupted, Refused, RollbackFailed, RolledBack, UsageError
from baker.ledger import Ledger, identity, iso, lock_for, now
from baker.terraform import Plan, Terraform, backend_config, find_mirror

log = logging.getLogger("baker")

AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
#: resources an AMI change must never delete or replace (the fleet, its load balancer and target group)
PROTECTED_TYPES = (
    "aws_autoscaling_group",
    "aws_lb",
    "aws_alb",
    "aws_lb_target_group",
    "aws_alb_target_group",
)
#: instance refresh states after which nothing more will happen
REFRESH_FAILED = (
    "Failed",
    "Cancelled",
    "Cancelling",
    "RollbackInProgress",
    "RollbackFailed",
    "RollbackSuccessful",
)
REFRESH_RUNNING = ("Pending", "InProgress", "Baking")
#: EC2 accepts at most this many values in one filter
FILTER_VALUES = 200


# ---------------------------------------------------------------- the plan gate


def gate(plan: Plan, *, allow_replace: bool = False) -> list[str]:
    """Refuse a plan that would delete or replace the fleet, its load balancer or target group.

    Returns the addresses it would have refused (empty when the plan is safe or allowed).
    """
    unsafe = [
        f"{c.address} ({c.kind})" for c in plan.changes if c.type in PROTECTED_TYPES and "delete" in c.actions
    ]
    if unsafe and not allow_replace:
        raise Refused(
            f"the Terraform plan would destroy: {', '.join(unsafe)}; an AMI change only updates the launch "
            "template and the Auto Scaling group. Re-run with --allow-replace if that is really wanted",
            details={"outcome": "refused", "unsafe": unsafe, "plan": plan.summary()},
        )
    return unsafe


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


# ---------------------------------------------------------------- the rollout


@dataclass(frozen=True)
class Rollout:
    """One look at the fleet: what the health gate decides on."""

    ami_id: str
    desired: int
    #: in-service instances of the group on the new AMI, by target health state
    new_states: dict[str, int]
    #: in-service instances of the group still on another AMI
    old: int
    refresh_status: str | None
    refresh_percent: int | None
    #: instance id -> {ami_id, lifecycle, health}
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def healthy(self) -> int:
        return self.new_states.get("healthy", 0)

    @property
    def done(self) -> bool:
        """Every desired instance runs the new AMI and is healthy, and the refresh is over."""
        return (
            self.desired > 0
            and self.healthy >= self.desired
            and self.old == 0
            and self.refresh_status not in REFRESH_RUNNING
        )

    @property
    def failed(self) -> str | None:
        if self.refresh_status in REFRESH_FAILED:
            return f"the instance refresh ended {self.refresh_status}"
        return None

    def line(self, elapsed: float) -> str:
        others = ", ".join(f"{n} {s}" for s, n in sorted(self.new_states.items()) if s != "healthy" and n)
        parts = [f"{self.healthy}/{self.desired} healthy on {self.ami_id}"]
        if others:
            parts.append(others)
        if self.old:
            parts.append(f"{self.old} on older AMIs")
        if self.refresh_status:
            pct = f" {self.refresh_percent}%" if self.refresh_percent is not None else ""
            parts.append(f"refresh {self.refresh_status}{pct}")
        parts.append(duration(elapsed))
        return ", ".join(parts)

    def live(self) -> str:
        """What runs, in words: for the message of a failed deploy."""
        by_ami: dict[str, dict[str, int]] = {}
        for inst in self.instances.values():
            if inst.get("lifecycle") != "InService":
                continue
            states = by_ami.setdefault(inst.get("ami_id") or "?", {})
            states[inst.get("health") or "unregistered"] = (
                states.get(inst.get("health") or "unregistered", 0) + 1
            )
        if not by_ami:
            return "no instance in service"
        return "; ".join(
            f"{sum(s.values())} on {ami} (" + ", ".join(f"{n} {h}" for h, n in sorted(s.items())) + ")"
            for ami, s in sorted(by_ami.items())
        )


def assess(
    ami_id: str,
    group: dict[str, Any],
    targets: list[dict[str, Any]],
    images: dict[str, str],
    refresh: dict[str, Any] | None,
) -> Rollout:
    """Pure: the rollout state from one DescribeAutoScalingGroups, DescribeTargetHealth,
    DescribeInstances (instance id -> AMI) and DescribeInstanceRefreshes answer."""
    health = {t["Target"]["Id"]: t.get("TargetHealth", {}).get("State", "unknown") for t in targets}
    new_states: dict[str, int] = {}
    old = 0
    instances: dict[str, dict[str, Any]] = {}
    for inst in group.get("Instances", []):
        iid = inst["InstanceId"]
        lifecycle = inst.get("LifecycleState", "")
        image = images.get(iid)
        state = health.get(iid, "unregistered")
        instances[iid] = {"ami_id": image, "lifecycle": lifecycle, "health": state}
        if lifecycle != "InService":
            continue
        if image == ami_id:
            new_states[state] = new_states.get(state, 0) + 1
        else:
            old += 1
    return Rollout(
        ami_id=ami_id,
        desired=int(group.get("DesiredCapacity", 0)),
        new_states=new_states,
        old=old,
        refresh_status=refresh.get("Status") if refresh else None,
        refresh_percent=refresh.get("PercentageComplete") if refresh else None,
        instances=instances,
    )


def duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass
class Watch:
    """Follows one rollout with a bounded number of calls per poll (four for up to 200 instances)."""

    aws: AWS
    asg_name: str
    target_group_arn: str
    poll_min: float = 2.0
    poll_max: float = 15.0
    #: refresh ids that existed before our apply; ours is the newest one not among them
    known_refreshes: frozenset[str] = frozenset()
    on_poll: Any = None
    #: the new AMI going this long without a healthy target after one reported unhealthy fails
    #: the rollout early (None: wait for the refresh or the deadline)
    unhealthy_timeout: float | None = None

    def refreshes(self) -> list[dict[str, Any]]:
        return (
            self.aws.client("autoscaling")
            .describe_instance_refreshes(AutoScalingGroupName=self.asg_name, MaxRecords=10)
            .get("InstanceRefreshes", [])
        )

    def look(self, ami_id: str) -> Rollout:
        asg = self.aws.client("autoscaling")
        refreshes = [r for r in self.refreshes() if r.get("InstanceRefreshId") not in self.known_refreshes]
        refresh = max(refreshes, key=lambda r: str(r.get("StartTime") or ""), default=None)
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[self.asg_name]).get(
            "AutoScalingGroups"
        )
        if not groups:
            raise UsageError(
                f"Auto Scaling group {self.asg_name} not found (was it deleted outside Terraform?)"
            )
        targets = (
            self.aws.client("elbv2")
            .describe_target_health(TargetGroupArn=self.target_group_arn)
            .get("TargetHealthDescriptions", [])
        )
        ids = sorted(
            {i["InstanceId"] for i in groups[0].get("Instances", [])} | {t["Target"]["Id"] for t in targets}
        )
        images: dict[str, str] = {}
        # One call for up to 200 instances (EC2's limit of values per filter). A filter, not
        # InstanceIds: an instance that is already gone must not fail the whole call.
        for start in range(0, len(ids), FILTER_VALUES):
            chunk = ids[start : start + FILTER_VALUES]
            resp = self.aws.client("ec2").describe_instances(
                Filters=[{"Name": "instance-id", "Values": chunk}]
            )
            for res in resp.get("Reservations", []):
                for inst in res.get("Instances", []):
                    images[inst["InstanceId"]] = inst.get("ImageId", "")
        return assess(ami_id, groups[0], targets, images, refresh)

    def _stuck(self, state: Rollout, since: list[float], at: float) -> str | None:
        """The reason to fail early when the new AMI looks broken: one of its targets reported
        unhealthy and none has been healthy for ``unhealthy_timeout`` since. Tracked per AMI, not
        per instance, because the group replaces unhealthy instances (ELB health checks) and a
        replacement starts over as ``initial``. ``since`` holds the clock between polls."""
        if state.healthy:
            since.clear()
        elif state.new_states.get("unhealthy") and not since:
            since.append(at)
        if self.unhealthy_timeout is None or not since or at - since[0] < self.unhealthy_timeout:
            return None
        return (
            f"no target on {state.ami_id} became healthy in the {duration(at - since[0])} since one "
            f"reported unhealthy (deploy.unhealthy_timeout: {self.unhealthy_timeout:g}s)"
        )

    def wait(
        self, ami_id: str, deadline: float, *, started: float | None = None
    ) -> tuple[Rollout, str | None]:
        """Poll until done, failed or past the deadline (monotonic). Returns the last look and
        the reason of failure (None when the fleet is healthy)."""
        started = started or time.monotonic()
        interval = self.poll_min
        last_line = ""
        unhealthy_since: list[float] = []
        while True:
            state = self.look(ami_id)
            stuck = self._stuck(state, unhealthy_since, time.monotonic())
            line = state.line(time.monotonic() - started)
            if self.on_poll is not None:
                self.on_poll(state)
            core = line.rsplit(", ", 1)[0]
            if core != last_line:
                interval = self.poll_min  # something moved: look again soon
                last_line = core
            log.info("waiting: %s", line)
            if state.done:
                return state, None
            if state.failed:
                return state, state.failed
            if stuck:
                return state, stuck
            left = deadline - time.monotonic()
            if left <= 0:
                return state, (
                    f"not healthy within the deadline: {state.healthy}/{state.desired} healthy on {ami_id}"
                )
            if unhealthy_since and self.unhealthy_timeout is not None:
                # look again right when the early failure would be due
                due = unhealthy_since[0] + self.unhealthy_timeout - time.monotonic()
                left = min(left, max(due, self.poll_min))
            time.sleep(min(interval, left))
            interval = min(interval * 1.5, self.poll_max)


# ---------------------------------------------------------------- the stage


def terraform_for(project: Project, env: Environment, aws: AWS, *, local: bool = False) -> Terraform:
    """The environment's Terraform: its own working directory, backend and provider mirror."""
    s = project.settings
    backend = env.settings.deploy.backend
    tf_env = aws.env_vars()
    if aws.role_arn and not aws.credentials:
        # the assumed role's temporary credentials, so Terraform acts as the same identity
        creds = aws.session().get_credentials()
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            tf_env.update(
                {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
            )
            if frozen.token:
                tf_env["AWS_SESSION_TOKEN"] = frozen.token
            tf_env.pop("AWS_PROFILE", None)
    return Terraform(
        module_dir=project.path(s.paths.terraform),
        work_dir=project.path(s.paths.build) / "terraform" / env.name,
        binary=s.terraform.binary,
        env=tf_env,
        backend=backend_config(backend, region=aws.region, endpoint=aws.endpoint_url if local else None)
        if backend
        else None,
        mirror=find_mirror(s.terraform.plugin_mirror),
        timeout=s.terraform.timeout,
    )


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
    """Point an environment's fleet at an AMI and wait until it is healthy, or roll back."""

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
        self.ledger = Ledger(aws, prefix="/baker", app=self.app, env=env.name)
        self.poll_min, self.poll_max = poll_min, poll_max
        #: monotonic time the fleet was first seen healthy (for the benchmark)
        self.healthy_at: float | None = None
        #: releases whose intent is written and whose outcome is not yet (marked interrupted on Ctrl-C)
        self._open: list[dict[str, Any]] = []
        self.on_poll: Any = None

    # -- pieces

    def variables(self, ami_id: str) -> dict[str, Any]:
        d = self.env.settings.deploy
        out: dict[str, Any] = {"name": f"{self.app}-{self.env.name}", **d.variables}
        out.update(
            {
                "image_id": ami_id,
                "min_healthy_percentage": d.min_healthy_percent,
                "instance_warmup": d.instance_warmup,
                "region": self.aws.region,
            }
        )
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

    def image(self, ami_id: str) -> dict[str, Any]:
        """The AMI's provenance (version, git sha); a UsageError when it does not exist here."""
        if not AMI_ID.match(ami_id):
            raise UsageError(f"{ami_id!r} is not an AMI id (ami-...)")
        try:
            images = self.aws.client("ec2").describe_images(ImageIds=[ami_id]).get("Images", [])
        except AWSError as exc:
            if error_code(exc).startswith("InvalidAMIID"):
                images = []
            else:
                raise
        if not images:
            raise UsageError(f"AMI {ami_id} not found in {self.aws.region}")
        img = images[0]
        if img.get("State") not in (None, "available"):
            raise UsageError(f"AMI {ami_id} is {img.get('State')}, not available")
        tags = {t["Key"]: t["Value"] for t in img.get("Tags", [])}
        return {
            "version": tags.get("baker:version"),
            "git_sha": tags.get("baker:git-sha"),
            "name": img.get("Name"),
        }

    def ensure_backend(self) -> None:
        """The local cloud starts empty: create the state bucket (versioned) the first time."""
        backend = self.env.settings.deploy.backend
        if not (self.local and backend):
            return
        s3 = self.aws.in_region(backend.region or self.aws.region).client("s3")
        try:
            s3.head_bucket(Bucket=backend.bucket)
            return
        except AWSError as exc:
            if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        region = backend.region or self.aws.region
        kwargs: dict[str, Any] = {"Bucket": backend.bucket}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
        s3.put_bucket_versioning(Bucket=backend.bucket, VersioningConfiguration={"Status": "Enabled"})

    def _apply(self, plan: Plan) -> tuple[dict[str, Any], Watch]:
        """Apply a gated plan; returns the outputs and a watch on the rollout it starts."""
        known: frozenset[str] = frozenset()
        outputs: dict[str, Any] = {}
        with contextlib.suppress(BakerError):
            outputs = self.terraform.outputs()
        if outputs.get("asg_name"):
            with contextlib.suppress(AWSError):
                probe = Watch(self.aws, outputs["asg_name"], outputs.get("target_group_arn", ""))
                known = frozenset(r["InstanceRefreshId"] for r in probe.refreshes())
        log.info("applying: %s", plan_text(plan).splitlines()[0])
        self.terraform.apply(plan)
        outputs = self.terraform.outputs()
        watch = Watch(
            self.aws,
            outputs["asg_name"],
            outputs["target_group_arn"],
            poll_min=self.poll_min,
            poll_max=self.poll_max,
            known_refreshes=known,
            on_poll=self.on_poll,
            unhealthy_timeout=self.env.settings.deploy.unhealthy_timeout,
        )
        return outputs, watch

    def _cancel_refresh(self, asg_name: str) -> None:
        """Stop a refresh still rolling out the bad AMI before the rollback starts its own."""
        with contextlib.suppress(AWSError):
            self.aws.client("autoscaling").cancel_instance_refresh(AutoScalingGroupName=asg_name)
            log.info("cancelled the instance refresh of %s", asg_name)

    # -- the whole deploy

    def run(
        self,
        ami_id: str,
        *,
        timeout: int | None = None,
        rollback: bool = True,
        dry_run: bool = False,
        allow_replace: bool = False,
        ignore_pin: bool = False,
    ) -> dict[str, Any]:
        """Deploy ``ami_id``. ``ignore_pin`` is for ``baker pin`` itself, which deploys into a pin."""
        started = time.monotonic()
        info = self.image(ami_id)
        pin = self.ledger.pin()
        if pin and not ignore_pin:
            raise Refused(
                f"{self.env.name} is pinned to {pin.get('ami_id')} by {pin.get('by')} at {pin.get('at')} "
                f"({pin.get('reason')}); the pin is the SSM parameter {self.ledger.pin_name}: "
                "delete it to deploy again",
                details={"outcome": "refused", "env": self.env.name, "ami_id": ami_id, "pinned": pin},
            )
        live = self.ledger.live()
        previous_ami = live.get("ami_id") if live else None
        result: dict[str, Any] = {
            "env": self.env.name,
            "ami_id": ami_id,
            "previous_ami_id": previous_ami,
            "outcome": None,
            "version": info["version"],
            "git_sha": info["git_sha"],
        }
        if dry_run:
            self.ensure_backend()
            self.terraform.init()
            plan = self.terraform.plan(self.variables(ami_id))
            self.terraform.discard(plan)
            unsafe = gate(plan, allow_replace=True)
            result.update(
                {
                    "outcome": "planned",
                    "plan": plan.summary(),
                    "plan_text": plan_text(plan),
                    "would_refuse": unsafe and not allow_replace,
                    "ledger_writes": [f"{self.ledger.releases_name}: {ami_id} in_progress, then outcome"],
                }
            )
            return result

        health_timeout = timeout or self.env.settings.deploy.health_timeout
        lock = lock_for(
            self.aws,
            table=self.project.settings.state.table,
            app=self.app,
            env=self.env.name,
            lease_seconds=self.project.settings.state.lock_lease_seconds,
            purpose=f"deploy {ami_id}",
        )
        release_id = self.ledger.new_id()
        record: dict[str, Any] = {
            "id": release_id,
            "kind": "deploy",
            "ami_id": ami_id,
            "version": info["version"],
            "git_sha": info["git_sha"],
            "by": identity(),
            "at": iso(now()),
            "previous_ami_id": previous_ami,
        }
        result["release_id"] = release_id
        with _sigterm_as_interrupt(), lock:
            try:
                # read again under the lock: a deploy that just finished may have changed what is live
                live = self.ledger.live()
                record["previous_ami_id"] = result["previous_ami_id"] = live.get("ami_id") if live else None
                self.ensure_backend()
                self.terraform.init()
                plan, outputs, watch = self._apply_recorded(ami_id, record, allow_replace)
                result.update(
                    {
                        "asg_name": outputs.get("asg_name"),
                        "target_group_arn": outputs.get("target_group_arn"),
                        "launch_template_version": outputs.get("launch_template_version"),
                        "plan": plan.summary(),
                    }
                )
                applied = time.monotonic()
                state, failure = watch.wait(ami_id, applied + health_timeout, started=applied)
                result["instances"] = state.instances
                if failure is None:
                    self.healthy_at = time.monotonic()
                    self._close(record, outcome="healthy", healthy_at=iso(now()))
                    result["outcome"] = "healthy"
                    result["seconds"] = {
                        "apply": round(applied - started, 1),
                        "wait": round(self.healthy_at - applied, 1),
                        "total": round(time.monotonic() - started, 1),
                    }
                    log.info("%s is healthy on %s", self.env.name, ami_id)
                    return result
                self._close(record, outcome="failed", reason=failure)
                result["reason"] = failure
                log.warning("deploy of %s to %s failed: %s", ami_id, self.env.name, failure)
                return self._fail(
                    result,
                    record,
                    state,
                    watch,
                    rollback=rollback,
                    allow_replace=allow_replace,
                    health_timeout=health_timeout,
                )
            except (KeyboardInterrupt, Interrupted):
                live_now = "unknown"
                written = bool(self._open)
                for rec in self._open:
                    with contextlib.suppress(BakerError, KeyboardInterrupt):
                        self.ledger.write({**rec, "outcome": "interrupted"})
                if written:
                    with contextlib.suppress(BakerError, KeyboardInterrupt):
                        live_now = self._live_words()
                raise Interrupted(
                    f"interrupted; deploy lock released; release {release_id} of {ami_id} recorded as "
                    f"{'interrupted' if written else 'never applied'}; live: {live_now}",
                    details={**result, "outcome": "interrupted"},
                ) from None

    def _apply_recorded(
        self, ami_id: str, record: dict[str, Any], allow_replace: bool
    ) -> tuple[Plan, dict[str, Any], Watch]:
        """Plan and gate, write the intent, then apply (the intent exists before anything changes)."""
        plan = self.terraform.plan(self.variables(ami_id))
        try:
            gate(plan, allow_replace=allow_replace)
        except Refused as exc:
            self.terraform.discard(plan)
            exc.details.update(
                {"env": self.env.name, "ami_id": ami_id, "previous_ami_id": record.get("previous_ami_id")}
            )
            raise
        self.ledger.write({**record, "outcome": "in_progress"})
        self._open.append(record)
        outputs, watch = self._apply(plan)
        return plan, outputs, watch

    def _close(self, record: dict[str, Any], **outcome: Any) -> None:
        """Write a release's outcome; it is no longer open."""
        self.ledger.write({**record, **outcome})
        self._open = [r for r in self._open if r["id"] != record["id"]]

    def _live_words(self) -> str:
        out = self.terraform.outputs()
        if not out.get("asg_name"):
            return "nothing (no fleet yet)"
        watch = Watch(self.aws, out["asg_name"], out["target_group_arn"])
        return watch.look(str(out.get("image_id") or "")).live()

    def _fail(
        self,
        result: dict[str, Any],
        record: dict[str, Any],
        state: Rollout,
        watch: Watch,
        *,
        rollback: bool,
        allow_replace: bool,
        health_timeout: int,
    ) -> dict[str, Any]:
        ami_id = result["ami_id"]
        failure = result["reason"]
        if not rollback:
            result["outcome"] = "failed"
            raise RollbackFailed(
                f"deploy of {ami_id} to {self.env.name} failed ({failure}); --no-rollback: left as it is. "
                f"Live: {state.live()}",
                details=result,
            )
        target = self.ledger.last_good(exclude_ami=ami_id)
        if target is None:
            result["outcome"] = "failed"
            raise RollbackFailed(
                f"deploy of {ami_id} to {self.env.name} failed ({failure}) and there is no previous good "
                f"release to roll back to (first deploy). Live: {state.live()}",
                details=result,
            )
        good = target["ami_id"]
        log.warning("rolling %s back to %s", self.env.name, good)
        self._cancel_refresh(watch.asg_name)
        back = {
            **record,
            "id": self.ledger.new_id(),
            "kind": "rollback",
            "ami_id": good,
            "version": target.get("version"),
            "git_sha": target.get("git_sha"),
            "at": iso(now()),
            "previous_ami_id": ami_id,
            "rollback_of": record["id"],
        }
        rb: dict[str, Any] = {"ami_id": good, "release_id": back["id"]}
        result["rollback"] = rb
        try:
            _, _, back_watch = self._apply_recorded(good, back, allow_replace)
            applied = time.monotonic()
            back_state, back_failure = back_watch.wait(good, applied + health_timeout, started=applied)
        except (KeyboardInterrupt, Interrupted):
            raise
        except BakerError as exc:
            back_failure, back_state = f"{type(exc).__name__}: {exc.message}", None
        result["instances"] = back_state.instances if back_state else result.get("instances")
        if back_failure is None:
            self._close(back, outcome="healthy", healthy_at=iso(now()))
            self._close(record, outcome="rolled_back", reason=failure)
            result["outcome"] = "rolled_back"
            rb["outcome"] = "healthy"
            raise RolledBack(
                f"deploy of {ami_id} to {self.env.name} failed ({failure}); rolled back: {good} is live and "
                f"healthy again",
                details=result,
            )
        with contextlib.suppress(BakerError):
            self._close(back, outcome="failed", reason=back_failure)
        with contextlib.suppress(BakerError):
            self._close(record, outcome="rollback_failed", reason=failure)
        live_now = back_state.live() if back_state else "unknown"
        if back_state is None:
            with contextlib.suppress(BakerError):
                live_now = self._live_words()
        result["outcome"] = "rollback_failed"
        rb["outcome"] = "failed"
        rb["reason"] = back_failure
        raise RollbackFailed(
            f"deploy of {ami_id} to {self.env.name} failed ({failure}) and the rollback to {good} failed too "
            f"({back_failure}). Live: {live_now}. A human is needed",
            details=result,
        )
