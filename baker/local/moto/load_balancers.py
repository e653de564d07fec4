"""Load balancers a client can reach (part of gap 13): moto's listeners answer nowhere.

AWS: an Application Load Balancer's listener forwards each request to a healthy target of the
target groups its default forward action names, in proportion to their weights (Elastic Load
Balancing, Application Load Balancers guide, "Listener rules", forward actions with weighted
target groups); with no healthy target it answers 503.

Here every ALB HTTP listener answers on a loopback port of the local cloud (baker.local.lb) and
forwards to the healthy live targets, re-synced after each round of health checks.

HTTPS listeners (Application Load Balancers guide, "Create an HTTPS listener"): the listener
terminates TLS with the ACM certificate it names (``Certificates``; the emulator's ACM holds it,
imported or the local cloud's own, baker.local.moto.certificates) under its security policy, and
forwards the plain request. A listener whose default action is ``redirect`` answers the redirect
itself ("Redirect actions": HTTP_301 or HTTP_302, ``#{host}``, ``#{path}`` and ``#{query}`` kept).
"""

from __future__ import annotations

from typing import Any

from baker.local.lb import Certificate, Redirect, Route, Target
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

    wanted: dict[str, Route] = {}
    for account, regions in list(elbv2_backends.items()):
        for region, backend in list(regions.items()):
            for lb in list(backend.load_balancers.values()):
                if lb.type != "application":
                    continue
                for listener in list(lb.listeners.values()):
                    if listener.protocol not in ("HTTP", "HTTPS"):
                        continue
                    certificate = None
                    if listener.protocol == "HTTPS":
                        certificate = _certificate(account, region, listener)
                        if certificate is None:
                            continue  # nothing to serve it with: it answers nowhere
                    targets: list[Target] = []
                    for action in listener.default_actions[:1]:
                        for arn, weight in _forwarded(action):
                            tg = backend.target_groups.get(arn)
                            targets += _healthy_targets(backend, tg) * max(weight, 0) if tg else []
                    wanted[listener.arn] = Route(
                        lb.arn,
                        lb.name,
                        lb.dns_name,
                        int(listener.port),
                        targets,
                        certificate=certificate,
                        redirect=_redirect(listener.default_actions[:1], int(listener.port)),
                    )
    BALANCERS.sync(wanted)


def _certificate(account: str, region: str, listener: Any) -> Certificate | None:
    """The ACM certificate an HTTPS listener names, as the emulator's ACM holds it."""
    from moto.acm.models import AWS_ROOT_CA, acm_backends

    arn = listener.certificate or next(iter(listener.certificates or []), None)
    if not arn:
        return None
    try:
        bundle = acm_backends[account][region].get_certificate(arn)
    except Exception:  # moto's CertificateNotFound and friends: no certificate to serve
        return None
    chain = bundle.chain.replace(AWS_ROOT_CA, b"")  # moto appends a made-up AWS root to every chain
    return Certificate(arn, bundle.cert, chain, bundle.key, listener.ssl_policy or "")


def _redirect(actions: list[Any], port: int) -> Redirect | None:
    data = getattr(actions[0], "data", {}) if actions else {}
    if data.get("Type") != "redirect":
        return None
    config = data.get("RedirectConfig") or {}
    to = str(config.get("Port") or "#{port}")
    status = 301 if config.get("StatusCode") == "HTTP_301" else 302
    return Redirect(status, str(config.get("Protocol") or "HTTP"), port if to == "#{port}" else int(to))


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
