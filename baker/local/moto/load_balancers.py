"""Load balancers a client can reach (part of gap 13): moto's listeners answer nowhere.

AWS: an Application Load Balancer's listener forwards each request to a healthy target of the
target groups its default forward action names, in proportion to their weights (Elastic Load
Balancing, Application Load Balancers guide, "Listener rules", forward actions with weighted
target groups); with no healthy target it answers 503.

Here every ALB HTTP listener answers on a loopback port of the local cloud (baker.local.lb) and
forwards to the healthy live targets, re-synced after each round of health checks.
"""

from __future__ import annotations

from typing import Any

from baker.local.lb import Target
from baker.local.moto import state
from baker.local.moto.state import BALANCERS, is_live
from baker.local.moto.target_health import target_health


def _forwarded(action: object) -> list[tuple[str, int]]:
    """(target group ARN, weight) of a listener's forward action."""
    data = getattr(action, "data", {}) or {}
    if data.get("Type") != "forward":
        return []
    groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
    if groups:
        return [(g["TargetGroupArn"], int(g.get("Weight", 1))) for g in groups]
    return [(data["TargetGroupArn"], 1)] if data.get("TargetGroupArn") else []


def sync_load_balancers() -> None:
    """Every ALB HTTP listener answers on loopback and forwards to its healthy live targets (under LOCK)."""
    from moto.elbv2 import elbv2_backends

    wanted: dict[str, tuple[str, str, str, int, list[Target]]] = {}
    for _account, regions in list(elbv2_backends.items()):
        for _region, backend in list(regions.items()):
            for lb in list(backend.load_balancers.values()):
                if lb.type != "application":
                    continue
                for listener in list(lb.listeners.values()):
                    if listener.protocol != "HTTP":
                        continue
                    targets: list[Target] = []
                    for action in listener.default_actions[:1]:
                        for arn, weight in _forwarded(action):
                            tg = backend.target_groups.get(arn)
                            targets += _healthy_targets(backend, tg) * max(weight, 0) if tg else []
                    wanted[listener.arn] = (lb.arn, lb.name, lb.dns_name, int(listener.port), targets)
    BALANCERS.sync(wanted)


def _healthy_targets(backend: Any, tg: Any) -> list[Target]:
    found = []
    for target in list(tg.targets.values()):
        iid = str(target.get("Id", ""))
        instance = backend.ec2_backend.get_instance_by_id(iid) if iid.startswith("i-") else None
        if (
            instance is None
            or not is_live(instance)
            or instance.state != "running"
            or state.INSTANCES is None
        ):
            continue
        netns_file = state.INSTANCES.netns_file(iid)
        if netns_file and target_health(tg, instance)[0] == "healthy":
            found.append(Target(iid, netns_file, int(target.get("Port") or tg.port), tg.arn))
    return found
