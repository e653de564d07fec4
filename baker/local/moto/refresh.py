"""Instance refresh for moto 5.2.5's Auto Scaling (gaps 1 and 10 of baker.local.moto): the state machine.

``StartInstanceRefresh``, ``DescribeInstanceRefreshes``, ``CancelInstanceRefresh`` and
``RollbackInstanceRefresh`` answer HTTP 500 in plain moto. Here: batches honouring
Min/MaxHealthyPercentage, replacements launched from the version the refresh (or the group) asks
for, registered with the group's target groups, old instances deregistered and terminated;
Pending -> InProgress -> Successful / Failed / Cancelled (and the Rollback* states), advanced by
one background thread under the emulator's lock.

An old instance is deregistered from the group's target groups first and terminated once the load
balancers serve no request of its (or when the longest deregistration delay of those groups has
passed), as Auto Scaling does behind a load balancer: "Elastic Load Balancing stops sending requests
to targets that are deregistering ... If a deregistering target has no in-flight requests and no
active connections, Elastic Load Balancing immediately completes the deregistration process ... If
the target is part of an Auto Scaling group, it can be terminated and replaced" (Application Load
Balancers guide, "Deregistration delay"; the group's activity waits in WaitingForELBConnectionDraining).
Terminating it first, as moto does, cut the requests it was answering and sent it new ones until the
load balancers' next sync: users of a rolling deploy saw a few 502s under load. The refresh is
Successful once its old instances are gone. A batch is healthy when the group sees it so
(``target_health.group_health``: real checks for live instances); one whose replacements are not
healthy within ``Settings.refresh_timeout`` fails the refresh (live replacements whose checks have
not decided yet get up to ``LIVE_BOOT_SECONDS``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baker.local.moto.state import BALANCERS, LOCK, SETTINGS, is_live, utcnow
from baker.local.moto.target_health import group_health

log = logging.getLogger("baker")

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress")
#: how long a refresh waits on live replacements whose checks have not decided yet (initial)
LIVE_BOOT_SECONDS = 120.0


@dataclass
class Refresh:
    """One instance refresh of one group, advanced by ``Refreshes.tick``."""

    id: str
    account_id: str
    region: str
    group_name: str
    strategy: str
    preferences: dict[str, Any]
    desired: dict[str, Any] | None
    #: (template id, version) new instances come from
    target: tuple[str, str]
    #: (template id, version) the replaced instances came from: what a rollback goes back to
    previous: tuple[str, str] | None
    to_replace: list[str]
    total: int
    status: str = "Pending"
    status_reason: str | None = None
    start_time: datetime = field(default_factory=utcnow)
    end_time: datetime | None = None
    created: float = field(default_factory=time.monotonic)
    launched: list[str] = field(default_factory=list)
    #: instances of the running batch: launched, waiting to be healthy; old ones waiting to go
    batch_new: list[str] = field(default_factory=list)
    batch_old: list[str] = field(default_factory=list)
    batch_started: float = 0.0
    done: int = 0
    rollback: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        percent = (
            100
            if self.status in ("Successful", "RollbackSuccessful")
            else (int(100 * self.done / self.total) if self.total else 100)
        )
        out: dict[str, Any] = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group_name,
            "Status": self.status,
            "StartTime": self.start_time,
            "PercentageComplete": percent,
            "InstancesToUpdate": max(self.total - self.done, 0),
            "ProgressDetails": {
                "LivePoolProgress": {
                    "PercentageComplete": percent,
                    "InstancesToUpdate": max(self.total - self.done, 0),
                }
            },
            "Preferences": self.preferences,
            "Strategy": self.strategy,
        }
        if self.status_reason:
            out["StatusReason"] = self.status_reason
        if self.end_time:
            out["EndTime"] = self.end_time
        if self.desired:
            out["DesiredConfiguration"] = self.desired
        if self.rollback:
            out["RollbackDetails"] = self.rollback
        return out


@dataclass
class Leaving:
    """Old instances a refresh took out of its group: deregistered (their targets drain), ended once
    no load balancer serves a request of theirs or at ``deadline`` (the deregistration delay)."""

    refresh_id: str
    ec2_backend: Any
    ids: list[str]
    deadline: float


class Refreshes:
    """All refreshes of the emulator, advanced by one background thread under ``LOCK``."""

    def __init__(self) -> None:
        self.leaving: list[Leaving] = []
        self.by_group: dict[tuple[str, str, str], list[Refresh]] = {}
        self._thread: threading.Thread | None = None

    def start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="baker-refresh", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(SETTINGS.tick_seconds)
            try:
                self.tick()
            except Exception:  # keep the emulator alive; the refresh shows what happened
                log.exception("instance refresh step failed")

    def history(self, account: str, region: str, group: str) -> list[Refresh]:
        return self.by_group.setdefault((account, region, group), [])

    def active(self, account: str, region: str, group: str) -> Refresh | None:
        return next((r for r in self.history(account, region, group) if r.status in ACTIVE), None)

    def tick(self) -> None:
        with LOCK:
            self._end_drained()
            for refreshes in list(self.by_group.values()):
                for refresh in refreshes:
                    if refresh.status in ACTIVE:
                        self._step(refresh)

    # -- one step

    def _step(self, r: Refresh) -> None:
        from moto.autoscaling import autoscaling_backends

        backend = autoscaling_backends[r.account_id][r.region]
        group = backend.autoscaling_groups.get(r.group_name)
        if group is None:
            self._finish(r, "Failed", "the Auto Scaling group was deleted")
            return
        if r.status == "Pending":
            if time.monotonic() - r.created >= SETTINGS.tick_seconds:
                r.status = "InProgress"
            return
        if r.status == "Cancelling":
            self._finish(r, "Cancelled", "Refresh was cancelled by the user")
            return
        rolling_back = r.status == "RollbackInProgress"
        if r.batch_new or r.batch_old:
            batch = self._instances(group, r.batch_new)
            states = [group_health(group, i) for i in batch]
            # a live replacement still booting and being checked (initial) is not failing yet: its
            # checks take their interval times the threshold; it gets up to LIVE_BOOT_SECONDS
            limit = SETTINGS.refresh_timeout
            if "unhealthy" not in states and any(is_live(i) for i in batch):
                limit = max(limit, LIVE_BOOT_SECONDS)
            if all(s == "healthy" for s in states):
                if r.batch_old:  # launch-before-terminate: the old ones go once the new are healthy
                    self._terminate(backend, group, r.batch_old, r)
                r.done += len(r.batch_new)
                r.batch_new, r.batch_old = [], []
            elif time.monotonic() - r.batch_started > limit:
                bad = sum(1 for s in states if s != "healthy")
                reason = f"{bad} replacement instance(s) did not become healthy within {limit:.0f}s"
                if not rolling_back and r.preferences.get("AutoRollback") and r.previous is not None:
                    self.start_rollback(r, group, f"Instance refresh failed: {reason}")
                else:
                    self._finish(r, "RollbackFailed" if rolling_back else "Failed", reason)
            return
        present = {s.instance.id for s in group.instance_states}
        r.to_replace = [i for i in r.to_replace if i in present]
        if not r.to_replace:
            if not any(leave.refresh_id == r.id for leave in self.leaving):
                self._complete(r, group)
            return
        self._next_batch(backend, group, r)

    def _instances(self, group: Any, ids: list[str]) -> list[Any]:
        found = []
        for instance_id in ids:
            instance = group.ec2_backend.get_instance_by_id(instance_id)
            if instance is not None:
                found.append(instance)
        return found

    def _next_batch(self, backend: Any, group: Any, r: Refresh) -> None:
        desired = max(group.desired_capacity or 0, 1)
        min_pct = int(r.preferences.get("MinHealthyPercentage", 90))
        max_pct = int(r.preferences.get("MaxHealthyPercentage", 100))
        if max_pct > 100:
            size = max(1, (desired * max_pct) // 100 - desired)
        else:
            size = max(1, desired - -(-desired * min_pct // 100))
        old = r.to_replace[:size]
        r.to_replace = r.to_replace[size:]
        if max_pct <= 100:
            self._terminate(backend, group, old, r)
        else:
            r.batch_old = old
        r.batch_new = self._launch(backend, group, len(old), r.target)
        r.launched.extend(r.batch_new)
        r.batch_started = time.monotonic()

    def _terminate(self, backend: Any, group: Any, ids: list[str], r: Refresh) -> None:
        """Out of the group and its target groups now; terminated once drained (``_end_drained``)."""
        from baker.local.moto.load_balancers import sync_load_balancers

        group.instance_states = [s for s in group.instance_states if s.instance.id not in ids]
        delay = self._deregister(backend, group, ids)
        backend.update_attached_elbs(group.name)
        self.leaving.append(Leaving(r.id, group.ec2_backend, list(ids), time.monotonic() + delay))
        sync_load_balancers()  # no new request reaches them

    @staticmethod
    def _deregister(backend: Any, group: Any, ids: list[str]) -> float:
        """Deregister ``ids`` from the group's target groups; the longest deregistration delay."""
        delay = 0.0
        elbv2 = backend.elbv2_backend
        for arn in group.target_group_arns or []:
            tg = elbv2.target_groups.get(arn)
            here = [{"Id": i} for i in ids if tg is not None and i in tg.targets]
            if here:
                elbv2.deregister_targets(arn, here)
                delay = max(delay, float(tg.attributes.get("deregistration_delay.timeout_seconds", 300) or 0))
        return delay

    def _end_drained(self) -> None:
        """Terminate the leaving instances no load balancer serves a request of (or whose delay is up)."""
        now = time.monotonic()
        for leave in list(self.leaving):
            if now < leave.deadline and any(BALANCERS.flights.serving(i) for i in leave.ids):
                continue
            self.leaving.remove(leave)
            alive = [
                i
                for i in leave.ids
                if (found := leave.ec2_backend.get_instance_by_id(i)) is not None
                and found.state != "terminated"
            ]
            if alive:
                leave.ec2_backend.terminate_instances(alive)

    def _launch(self, backend: Any, group: Any, count: int, target: tuple[str, str]) -> list[str]:
        if count <= 0:
            return []
        template_id, version = target
        saved = (group.ec2_launch_template, group.launch_template_version)
        before = {s.instance.id for s in group.instance_states}
        try:
            group.ec2_launch_template = group.ec2_backend.get_launch_template(template_id)
            group.launch_template_version = version
            group.replace_autoscaling_group_instances(count, group.get_propagated_tags())
        finally:
            group.ec2_launch_template, group.launch_template_version = saved
        backend.update_attached_target_groups(group.name)
        return [s.instance.id for s in group.instance_states if s.instance.id not in before]

    def _complete(self, r: Refresh, group: Any) -> None:
        if r.status == "RollbackInProgress":
            self._set_group_template(group, r.target)
            self._finish(r, "RollbackSuccessful", r.status_reason)
            return
        if r.desired and "LaunchTemplate" in r.desired:
            self._set_group_template(group, r.target)
        self._finish(r, "Successful", None)

    def _set_group_template(self, group: Any, target: tuple[str, str]) -> None:
        group.ec2_launch_template = group.ec2_backend.get_launch_template(target[0])
        group.launch_template_version = target[1]
        group.provided_launch_template_version = target[1]

    def _finish(self, r: Refresh, status: str, reason: str | None) -> None:
        r.status = status
        r.status_reason = reason
        r.end_time = utcnow()
        if r.rollback is not None:
            r.rollback["PercentageCompleteOnRollback"] = 100 if status == "RollbackSuccessful" else 0

    def start_rollback(self, r: Refresh, group: Any, reason: str) -> None:
        assert r.previous is not None
        present = {s.instance.id for s in group.instance_states}
        back = [i for i in r.launched if i in present]
        # a batch in flight: its replacements go back, the old ones it kept stay
        r.batch_new, r.batch_old = [], []
        r.rollback = {
            "RollbackReason": reason,
            "RollbackStartTime": utcnow(),
            "PercentageCompleteOnRollback": 0,
            "InstancesToUpdateOnRollback": len(back),
        }
        r.status, r.status_reason = "RollbackInProgress", reason
        r.target, r.previous = r.previous, r.target
        r.to_replace, r.total, r.done, r.launched = back, len(back), 0, []
        # new launches (and the group itself) go back to what ran before
        self._set_group_template(group, r.target)


REFRESHES = Refreshes()


def _template_of(instance_state: Any) -> tuple[str, str] | None:
    spec = instance_state.launch_template
    if not spec:
        return None
    return spec["LaunchTemplateId"], str(spec["Version"])


def _resolve(group: Any, spec: dict[str, Any] | None) -> tuple[str, str]:
    """(template id, version as the group will launch it) of a LaunchTemplate spec or of the group."""
    from moto.autoscaling.exceptions import ValidationError

    backend = group.ec2_backend
    if spec:
        if spec.get("LaunchTemplateId"):
            template = backend.get_launch_template(spec["LaunchTemplateId"])
        else:
            template = backend.get_launch_template_by_name(spec["LaunchTemplateName"])
        version = spec.get("Version") or "$Default"
    else:
        if group.ec2_launch_template is None:
            raise ValidationError("instance refresh of a group without a launch template is not emulated")
        template, version = group.ec2_launch_template, group.launch_template_version
    return template.id, str(version)


def _number(group: Any, target: tuple[str, str]) -> str:
    template = group.ec2_backend.get_launch_template(target[0])
    return str(template.get_version(target[1]).number)


def install() -> None:
    from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    class InProgress(AutoscalingClientError):
        code = "InstanceRefreshInProgressFault"
        message = (
            "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh."
        )

    class NotFound(AutoscalingClientError):
        code = "ActiveInstanceRefreshNotFoundFault"
        message = "No in progress or pending Instance Refresh found for Auto Scaling group"

    class Irreversible(AutoscalingClientError):
        code = "IrreversibleInstanceRefreshFault"
        message = "The rollback failed: the previous configuration of the group is not known."

    def _group(self: Any) -> Any:
        name = self._get_param("AutoScalingGroupName")
        group = self.autoscaling_backend.autoscaling_groups.get(name)
        if group is None:
            raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
        return group

    def start_instance_refresh(self: Any) -> ActionResult:
        group = _group(self)
        with LOCK:
            if REFRESHES.active(self.current_account, self.region, group.name):
                raise InProgress()
            desired = self._get_param("DesiredConfiguration") or None
            prefs = dict(self._get_param("Preferences") or {})
            prefs.setdefault("MinHealthyPercentage", 90)
            prefs.setdefault("InstanceWarmup", group.health_check_grace_period or 0)
            prefs.setdefault("SkipMatching", False)
            prefs.setdefault("AutoRollback", False)
            prefs.setdefault("ScaleInProtectedInstances", "Ignore")
            prefs.setdefault("StandbyInstances", "Ignore")
            target = _resolve(group, (desired or {}).get("LaunchTemplate"))
            target_number = _number(group, target)
            olds = [s for s in group.instance_states if s.lifecycle_state == "InService"]
            if prefs["SkipMatching"]:
                olds = [s for s in olds if _template_of(s) != (target[0], target_number)]
            previous_versions = [_template_of(s) for s in olds if _template_of(s)]
            previous = max(set(previous_versions), key=previous_versions.count) if previous_versions else None
            refresh = Refresh(
                id=str(uuid.uuid4()),
                account_id=self.current_account,
                region=self.region,
                group_name=group.name,
                strategy=self._get_param("Strategy") or "Rolling",
                preferences=prefs,
                desired=desired,
                target=target,
                previous=previous,
                to_replace=[s.instance.id for s in olds],
                total=len(olds),
            )
            REFRESHES.history(self.current_account, self.region, group.name).insert(0, refresh)
        return ActionResult({"InstanceRefreshId": refresh.id})

    def describe_instance_refreshes(self: Any) -> ActionResult:
        group = _group(self)
        REFRESHES.tick()
        ids = self._get_param("InstanceRefreshIds") or []
        limit = int(self._get_param("MaxRecords") or 50)
        with LOCK:
            found = [
                r.describe()
                for r in REFRESHES.history(self.current_account, self.region, group.name)
                if not ids or r.id in ids
            ]
        return ActionResult({"InstanceRefreshes": found[:limit]})

    def cancel_instance_refresh(self: Any) -> ActionResult:
        group = _group(self)
        with LOCK:
            refresh = REFRESHES.active(self.current_account, self.region, group.name)
            if refresh is None or refresh.status in ("Cancelling", "RollbackInProgress"):
                raise NotFound()
            refresh.status = "Cancelling"
        return ActionResult({"InstanceRefreshId": refresh.id})

    def rollback_instance_refresh(self: Any) -> ActionResult:
        group = _group(self)
        with LOCK:
            refresh = REFRESHES.active(self.current_account, self.region, group.name)
            if refresh is None or refresh.status in ("Cancelling", "RollbackInProgress"):
                raise NotFound()
            if refresh.previous is None:
                raise Irreversible()
            REFRESHES.start_rollback(refresh, group, "Rollback requested by the user")
        return ActionResult({"InstanceRefreshId": refresh.id})

    def describe_traffic_sources(self: Any) -> ActionResult:
        group = _group(self)
        sources = [
            {"Identifier": arn, "Type": "elbv2", "TrafficSource": arn} for arn in group.target_group_arns
        ]
        return ActionResult({"TrafficSources": sources})

    for fn in (
        start_instance_refresh,
        describe_instance_refreshes,
        cancel_instance_refresh,
        rollback_instance_refresh,
        describe_traffic_sources,
    ):
        setattr(AutoScalingResponse, fn.__name__, fn)
