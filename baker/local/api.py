"""The emulator's own API under ``/_baker/``: health override, settings, inventory, IAM enforcement
and its record of calls (JSON in and out).

Served next to the AWS APIs by the same server (``wsgi`` wraps moto's application), inside the
local cloud's namespace; ``baker local status`` and ``local health`` are its clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from baker.local.moto import policy_evaluation, retries, state, throttling
from baker.local.moto.state import BALANCERS, LOCK, SETTINGS, is_live, tag_map
from baker.local.moto.target_health import instance_health, set_health, target_health


def inventory() -> dict[str, Any]:
    """What the local cloud holds: our images and the instances, across accounts and regions."""
    from moto.ec2.models import ec2_backends

    images: list[dict[str, Any]] = []
    instances: list[dict[str, Any]] = []
    with LOCK:
        for account, regions in list(ec2_backends.items()):
            for region, backend in list(regions.items()):
                for ami in list(getattr(backend, "amis", {}).values()):
                    if ami.owner_id == account and ami.owner_alias != "amazon":
                        tags = tag_map(ami)
                        images.append(
                            {
                                "ami_id": ami.id,
                                "account": account,
                                "region": region,
                                "name": ami.name,
                                "version": tags.get("baker:version"),
                                "health": SETTINGS.health_by_ami.get(ami.id),
                                "content": state.root_disk(ami) is not None,
                            }
                        )
                for reservation in list(getattr(backend, "reservations", {}).values()):
                    for i in reservation.instances:
                        if i.state in ("running", "pending", "stopped"):
                            entry = {
                                "instance_id": i.id,
                                "account": account,
                                "region": region,
                                "ami_id": i.image_id,
                                "state": i.state,
                                "health": instance_health(i),
                                "live": False,
                            }
                            if is_live(i) and state.INSTANCES is not None:
                                entry.update(state.INSTANCES.describe(i.id))
                                entry["targets"] = _target_states(account, region, i)
                                if entry["targets"]:
                                    entry["health"] = sorted(entry["targets"].values())[-1]
                            else:
                                entry["note"] = "record only: this local cloud holds no content of its AMI"
                            instances.append(entry)
    return {"images": images, "instances": instances}


def _target_states(account: str, region: str, instance: Any) -> dict[str, str]:
    """Target group name -> state of the instance's target in it (live instances: real checks)."""
    from moto.elbv2 import elbv2_backends

    regions: Any = dict.get(elbv2_backends, account) or {}
    backend = dict.get(regions, region)
    if backend is None or instance.state != "running":
        return {}
    return {
        tg.name: target_health(tg, instance)[0]
        for tg in list(backend.target_groups.values())
        if instance.id in tg.targets
    }


def handle(method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """The emulator's own endpoints under ``/_baker/`` (JSON in, JSON out)."""
    try:
        data = json.loads(body or b"{}") if method == "POST" else {}
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        if path == "/_baker/health" and method == "POST":
            ami_id, state = data.get("ami_id"), data.get("state")
            if not isinstance(ami_id, str) or not ami_id.startswith("ami-"):
                raise ValueError("ami_id must be an AMI id")
            set_health(ami_id, state)
            return 200, {"ami_id": ami_id, "state": state}
        if path == "/_baker/health" and method == "GET":
            return 200, {"health_by_ami": dict(SETTINGS.health_by_ami)}
        if path == "/_baker/settings":
            with LOCK:
                for key in ("initial_seconds", "refresh_timeout", "tick_seconds", "copy_seconds"):
                    if key in data:
                        setattr(SETTINGS, key, float(data[key]))
                if "max_instances" in data:
                    SETTINGS.max_instances = int(data["max_instances"])
                keys = ("initial_seconds", "refresh_timeout", "tick_seconds", "max_instances", "copy_seconds")
                now = {k: getattr(SETTINGS, k) for k in keys}
            throttling.THROTTLE.set(
                share=float(data["throttle_share"]) if "throttle_share" in data else None,
                seconds=float(data["throttle_seconds"]) if "throttle_seconds" in data else None,
            )
            return 200, {**now, **throttling.THROTTLE.describe()}
        if path == "/_baker/iam":
            if method == "POST":
                on = data.get("enforce")
                if on is not None and not isinstance(on, bool):
                    raise ValueError("enforce must be true or false")
                policy_evaluation.ENFORCEMENT.set(on=on, reset=bool(data.get("reset")))
            return 200, policy_evaluation.ENFORCEMENT.describe()
        if path == "/_baker/status":
            return 200, {**inventory(), "load_balancers": BALANCERS.describe()}
    except (ValueError, TypeError) as exc:
        return 400, {"error": str(exc)}
    return 404, {"error": f"no such endpoint: {method} {path}"}


def wsgi(app: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap moto's WSGI app so that ``/_baker/...`` reaches ``handle``."""

    def locked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # one request at a time: the refresh thread changes the same backends under LOCK
        with LOCK:
            return app(environ, start_response)

    aws = throttling.wsgi(locked)  # a throttled request is answered without waiting for LOCK
    aws = retries.wsgi(aws)  # a retry of a call carried out already gets its first answer again

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/_baker/"):
            return aws(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, payload = handle(environ.get("REQUEST_METHOD", "GET"), path, body)
        raw = json.dumps(payload, default=str).encode()
        phrase = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        start_response(
            f"{status} {phrase}", [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))]
        )
        return [raw]

    return application
