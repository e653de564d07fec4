"""The health gate: follow a rollout until every desired instance runs the new AMI and its target
is healthy, or until it fails (the refresh ended badly, the deadline passed, or the new AMI went
``deploy.unhealthy_timeout`` without a healthy target after one failed its check).

A bounded number of calls per poll (four for up to 200 instances), polled with backoff that
resets whenever something moved.

The deadline holds when AWS misbehaves: a poll's calls get few attempts of their own (the wait is
the retry loop), and a poll that fails because the endpoint does not answer, or throttles past
botocore's retries, is said once (when it started, why) and polled again until the deadline.
A group that has vanished when the endpoint answers again fails the rollout saying both.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from baker import fleet
from baker.aws import AWS, POLL_ATTEMPTS, endpoint_of, transient
from baker.clock import Clock
from baker.errors import AWSError, UsageError
from baker.provenance import iso, utc_now

log = logging.getLogger("baker")

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


class GroupGone(UsageError):
    """The Auto Scaling group being watched does not exist (any more)."""


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
    on_poll: Callable[[Rollout], None] | None = None
    #: the new AMI going this long without a healthy target after one reported unhealthy fails
    #: the rollout early (None: wait for the refresh or the deadline)
    unhealthy_timeout: float | None = None
    #: the deadline, the polls and the sleeps between them (tests hand in time that they move)
    clock: Clock = field(default_factory=Clock)

    def _client(self, service: str, attempts: int | None) -> Any:
        return self.aws.client(service) if attempts is None else self.aws.client(service, attempts=attempts)

    def refreshes(self, attempts: int | None = None) -> list[dict[str, Any]]:
        return fleet.refreshes(self._client("autoscaling", attempts), self.asg_name)

    def look(self, ami_id: str, attempts: int | None = None) -> Rollout:
        """One look (four calls). ``attempts``: botocore's per call, when the caller loops itself."""
        # the group first: DescribeInstanceRefreshes of a group that is gone is a ValidationError
        group = fleet.group(self._client("autoscaling", attempts), self.asg_name)
        if group is None:
            raise GroupGone(
                f"Auto Scaling group {self.asg_name} not found (was it deleted outside Terraform?)"
            )
        refreshes = [
            r for r in self.refreshes(attempts) if r.get("InstanceRefreshId") not in self.known_refreshes
        ]
        refresh = max(refreshes, key=lambda r: str(r.get("StartTime") or ""), default=None)
        targets = (
            self._client("elbv2", attempts)
            .describe_target_health(TargetGroupArn=self.target_group_arn)
            .get("TargetHealthDescriptions", [])
        )
        ids = {i["InstanceId"] for i in group.get("Instances", [])} | {t["Target"]["Id"] for t in targets}
        images = fleet.instance_images(self._client("ec2", attempts), ids)
        return assess(ami_id, group, targets, images, refresh)

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
        started = started or self.clock.monotonic()
        interval = self.poll_min
        last_line = ""
        unhealthy_since: list[float] = []
        state = Rollout(
            ami_id=ami_id, desired=0, new_states={}, old=0, refresh_status=None, refresh_percent=None
        )
        #: (when, why, where) the endpoint stopped answering; kept after it answers again
        outage: tuple[str, str, str] | None = None
        down = False
        while True:
            try:
                state = self.look(ami_id, attempts=POLL_ATTEMPTS)
            except AWSError as exc:
                why = transient(exc)
                if why is None:
                    raise
                if not down:
                    where = endpoint_of(exc) or self.aws.endpoint_url or f"AWS in {self.aws.region}"
                    outage, down = (iso(utc_now()), why, where), True
                    log.warning(
                        "the AWS endpoint %s stopped answering at %s (%s); polling it until the deadline",
                        where,
                        outage[0],
                        why,
                    )
                left = deadline - self.clock.monotonic()
                if left <= 0:
                    assert outage is not None
                    waited = duration(self.clock.monotonic() - started)
                    return state, (
                        f"the AWS endpoint {outage[2]} stopped answering at {outage[0]} ({outage[1]}) "
                        f"and had not answered again when the deadline passed ({waited} after the wait began)"
                    )
                self.clock.sleep(min(interval, left))
                interval = min(interval * 1.5, self.poll_max)
                continue
            except GroupGone:
                # it was there when the wait began: the rollout failed, and this says how
                gone = Rollout(
                    ami_id, desired=0, new_states={}, old=0, refresh_status=None, refresh_percent=None
                )
                if outage is None:
                    return gone, (
                        f"the Auto Scaling group {self.asg_name} is gone (deleted outside Terraform, or "
                        "the AWS endpoint restarted without its state)"
                    )
                return gone, (
                    f"the Auto Scaling group {self.asg_name} is gone: the AWS endpoint {outage[2]} stopped "
                    f"answering at {outage[0]} ({outage[1]}) and answered again without it (restarted "
                    "without its state, or the group was deleted meanwhile)"
                )
            if down and outage is not None:
                down = False
                log.warning("the AWS endpoint %s answers again (it stopped at %s)", outage[2], outage[0])
            stuck = self._stuck(state, unhealthy_since, self.clock.monotonic())
            line = state.line(self.clock.monotonic() - started)
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
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return state, (
                    f"not healthy within the deadline: {state.healthy}/{state.desired} healthy on {ami_id}"
                )
            if unhealthy_since and self.unhealthy_timeout is not None:
                # look again right when the early failure would be due
                due = unhealthy_since[0] + self.unhealthy_timeout - self.clock.monotonic()
                left = min(left, max(due, self.poll_min))
            self.clock.sleep(min(interval, left))
            interval = min(interval * 1.5, self.poll_max)
