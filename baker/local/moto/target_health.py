"""Target health that follows real checks (gap 2): moto reports every registered target ``healthy``.

AWS: a target is ``initial`` while its first checks run, then ``healthy`` or ``unhealthy`` by the
target group's thresholds, and ``draining`` for the deregistration delay once it leaves the group
(Elastic Load Balancing, Application Load Balancers guide, "Health checks for your target
groups" and "Deregistration delay"). An Auto Scaling group with ``HealthCheckType=ELB`` replaces an
instance its load balancer reports unhealthy once the grace period has passed (Amazon EC2 Auto
Scaling User Guide, "Health checks for instances in an Auto Scaling group").

Here a live instance's target reports what real checks inside the instance say
(baker.local.health); an instance that is only a record reports ``initial`` for
``Settings.initial_seconds`` after its launch, then ``healthy``. The fault-injection override
(``POST /_baker/health``) beats both.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from baker.local.health import REASONS, Check
from baker.local.moto import state
from baker.local.moto.state import HEALTH, HEALTH_STATES, LOCK, SETTINGS, is_live, utcnow

log = logging.getLogger("baker")


def set_health(ami_id: str, state: str | None) -> None:
    """Force the targets of one AMI into ``state``; None returns them to the default."""
    if state is not None and state not in HEALTH_STATES:
        raise ValueError(f"state must be one of {', '.join(HEALTH_STATES)}")
    with LOCK:
        if state is None:
            SETTINGS.health_by_ami.pop(ami_id, None)
        else:
            SETTINGS.health_by_ami[ami_id] = state


def instance_health(instance: Any) -> str:
    """What a load balancer would say about this instance now: the knob's word, else initial-then-healthy."""
    if getattr(instance, "state", "running") != "running":
        return "unused"
    forced = SETTINGS.health_by_ami.get(getattr(instance, "image_id", ""))
    if forced is not None:
        return forced
    launched = getattr(instance, "launch_time", None)
    if isinstance(launched, datetime) and (utcnow() - launched).total_seconds() < SETTINGS.initial_seconds:
        return "initial"
    return "healthy"


def target_health(tg: Any, instance: Any) -> tuple[str, str | None, str | None]:
    """(state, reason, description) of one running instance's target in a target group.

    The fault-injection override first, then the real checks of a live instance, then the timer
    of an instance that is only a record.
    """
    forced = SETTINGS.health_by_ami.get(getattr(instance, "image_id", ""))
    if forced is None and is_live(instance):
        th = HEALTH.state(tg.arn, instance.id)
        return th.state, th.reason, th.description
    state = forced or instance_health(instance)
    reason, description = REASONS.get(state, (None, None)) if state != "healthy" else (None, None)
    return state, reason, description


def group_health(group: Any, instance: Any) -> str:
    """What the Auto Scaling group sees: healthy only when every target group of the group says so."""
    if getattr(instance, "state", "running") != "running":
        return "unused"
    if not is_live(instance) or not group.target_group_arns:
        return instance_health(instance)
    from moto.elbv2 import elbv2_backends

    groups = elbv2_backends[group.account_id][group.region].target_groups
    states = [target_health(groups[arn], instance)[0] for arn in group.target_group_arns if arn in groups]
    for worst in ("unhealthy", "initial", "draining", "unused"):
        if worst in states:
            return worst
    return "healthy" if states else instance_health(instance)


def live_targets() -> list[tuple[str, str, str | None, Check]]:
    """Every registered target of a running live instance, with its group's check (under LOCK)."""
    from moto.elbv2 import elbv2_backends

    found: list[tuple[str, str, str | None, Check]] = []
    if state.INSTANCES is None:
        return found
    for _account, regions in list(elbv2_backends.items()):
        for _region, backend in list(regions.items()):
            for tg in list(backend.target_groups.values()):
                for target in list(tg.targets.values()):
                    iid = str(target.get("Id", ""))
                    instance = backend.ec2_backend.get_instance_by_id(iid) if iid.startswith("i-") else None
                    if instance is None or not is_live(instance) or instance.state != "running":
                        continue
                    check = Check.of(tg, int(target.get("Port") or tg.port or 80))
                    netns_file = state.INSTANCES.netns_file(iid) if state.INSTANCES.booted(iid) else None
                    found.append((tg.arn, iid, netns_file, check))
    return found


def replace_elb_unhealthy() -> None:
    """A group with health_check_type ELB replaces live instances unhealthy past its grace period."""
    from moto.autoscaling import autoscaling_backends

    for _account, regions in list(autoscaling_backends.items()):
        for _region, backend in list(regions.items()):
            for group in list(backend.autoscaling_groups.values()):
                if group.health_check_type != "ELB" or not group.target_group_arns:
                    continue
                grace = float(group.health_check_grace_period or 0)
                for member in list(group.instance_states):
                    instance = member.instance
                    if member.lifecycle_state != "InService" or not is_live(instance):
                        continue
                    if (utcnow() - instance.launch_time).total_seconds() < grace:
                        continue
                    if group_health(group, instance) == "unhealthy":
                        log.info("%s: %s failed its ELB health checks; replacing it", group.name, instance.id)
                        backend.terminate_instance(instance.id, should_decrement=False)
                        backend.update_attached_target_groups(group.name)


def install() -> None:
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

    original = FakeTargetGroup.health_for

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = original(self, target, ec2_backend)
        tid = str(target.get("Id", ""))
        if tid not in self.targets and HEALTH.is_draining(self.arn, tid):
            reason, description = REASONS["draining"]
            return FakeHealthStatus(
                tid, status.port, status.health_check_port, "draining", reason, description
            )
        if status.status != "healthy" or not tid.startswith("i-"):
            return status
        instance = ec2_backend.get_instance_by_id(tid)
        if instance is None:
            return status
        state, why, what = target_health(self, instance)
        if state == "healthy":
            return status
        reason, description = why or "Target.InvalidState", what or f"Target is {state}"
        return FakeHealthStatus(
            status.instance_id, status.port, status.health_check_port, state, reason, description
        )

    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]

    original_describe = ELBv2Backend.describe_target_health

    def describe_target_health(self: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> Any:
        found = original_describe(self, target_group_arn, targets)
        if not targets:  # a target leaving the group is listed while it drains, as on AWS
            tg = self.target_groups[target_group_arn]
            listed = {s.instance_id for s in found}
            for iid in HEALTH.draining_in(target_group_arn):
                if iid not in listed:
                    found.append(tg.health_for({"Id": iid, "Port": tg.port}, self.ec2_backend))
        return found

    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]

    def drain(tg: Any, instance_ids: list[str]) -> None:
        """Live instances' targets drain for the group's deregistration delay (records leave at once)."""
        delay = float(tg.attributes.get("deregistration_delay.timeout_seconds", 300) or 0)
        for iid in instance_ids:
            instance = tg.ec2_backend.get_instance_by_id(iid)
            if instance is not None and is_live(instance):
                HEALTH.drain(tg.arn, iid, delay)

    original_deregister = FakeTargetGroup.deregister

    def deregister(self: Any, targets: list[dict[str, Any]]) -> None:
        leaving = [t["Id"] for t in targets if t["Id"] in self.targets]
        original_deregister(self, targets)
        drain(self, leaving)

    FakeTargetGroup.deregister = deregister  # type: ignore[method-assign]

    original_terminated = FakeTargetGroup.deregister_terminated_instances

    def deregister_terminated_instances(self: Any, instance_ids: list[str]) -> None:
        leaving = [iid for iid in instance_ids if iid in self.targets]
        original_terminated(self, instance_ids)
        drain(self, leaving)

    FakeTargetGroup.deregister_terminated_instances = deregister_terminated_instances  # type: ignore[method-assign]
