"""Real target health for live instances: the target group's own checks, made inside each instance.

For every target of a live instance (baker.local.instances) the checker makes the check the target
group describes (protocol, port or ``traffic-port``, path, matcher, interval, timeout) from a
thread that entered the instance's network namespace, to 127.0.0.1 there: nothing ever goes to
the address the emulator made up for the instance. The answers drive the state as an ALB does:
``initial`` until ``healthy_threshold`` checks in a row pass (``healthy``) or
``unhealthy_threshold`` fail (``unhealthy``), then back and forth by the same counts. A target
leaving its group (deregistered or terminated) reports ``draining`` for the group's
deregistration delay.

Targets of instances that are only records keep the emulator's timer (``initial`` for a few
seconds, then ``healthy``); the fault-injection override (``local health --ami``) beats both.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from baker.local import kernel

log = logging.getLogger("baker")

REASONS = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "draining": ("Target.DeregistrationInProgress", "Target deregistration is in progress"),
    "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
}


def matches(code: int, matcher: str) -> bool:
    """An ALB matcher ("200", "200,202", "200-299") against a status code."""
    for part in (matcher or "200").split(","):
        part = part.strip()
        if "-" in part:
            low, _, high = part.partition("-")
            if low.strip().isdigit() and high.strip().isdigit() and int(low) <= code <= int(high):
                return True
        elif part.isdigit() and int(part) == code:
            return True
    return False


@dataclass(frozen=True)
class Check:
    """One target group's health check, as DescribeTargetGroups states it."""

    protocol: str = "HTTP"
    port: int = 80
    path: str = "/"
    matcher: str = "200"
    interval: float = 30.0
    timeout: float = 5.0
    healthy_threshold: int = 5
    unhealthy_threshold: int = 2

    @classmethod
    def of(cls, tg: Any, traffic_port: int) -> Check:
        port = tg.health_check_port
        return cls(
            protocol=(tg.health_check_protocol or tg.protocol or "HTTP").upper(),
            port=int(port) if str(port or "").isdigit() else traffic_port,
            path=tg.health_check_path or "/",
            matcher=str((getattr(tg, "matcher", None) or {}).get("HttpCode", "200")),
            interval=float(tg.health_check_interval_seconds or 30),
            timeout=float(tg.health_check_timeout_seconds or 5),
            healthy_threshold=int(tg.healthy_threshold_count or 5),
            unhealthy_threshold=int(tg.unhealthy_threshold_count or 2),
        )


@dataclass
class TargetHealth:
    """The state of one target of one group, moved by the results of its checks."""

    state: str = "initial"
    reason: str | None = REASONS["initial"][0]
    description: str | None = REASONS["initial"][1]
    passes: int = 0
    fails: int = 0
    last_check: float = 0.0
    since: float = field(default_factory=time.monotonic)

    def record(self, ok: bool, reason: str, description: str, check: Check, now: float) -> None:
        self.last_check = now
        if ok:
            self.passes, self.fails = self.passes + 1, 0
            if self.state != "healthy" and self.passes >= check.healthy_threshold:
                self._become("healthy", None, None, now)
        else:
            self.fails, self.passes = self.fails + 1, 0
            if self.state != "unhealthy" and self.fails >= check.unhealthy_threshold:
                self._become("unhealthy", reason, description, now)
            elif self.state == "unhealthy":
                self.reason, self.description = reason, description

    def _become(self, state: str, reason: str | None, description: str | None, now: float) -> None:
        self.state, self.reason, self.description, self.since = state, reason, description, now


def probe(netns_file: str, check: Check) -> tuple[bool, str, str]:
    """One check inside the instance's network namespace, to 127.0.0.1 there."""

    def attempt() -> tuple[bool, str, str]:
        if check.protocol == "TCP":
            with socket.create_connection(("127.0.0.1", check.port), timeout=check.timeout):
                return True, "", ""
        conn = http.client.HTTPConnection("127.0.0.1", check.port, timeout=check.timeout)
        try:
            conn.request("GET", check.path, headers={"User-Agent": "ELB-HealthChecker/2.0"})
            code = conn.getresponse().status
        finally:
            conn.close()
        if matches(code, check.matcher):
            return True, "", ""
        return False, "Target.ResponseCodeMismatch", f"Health checks failed with these codes: [{code}]"

    try:
        return kernel.in_netns(netns_file, attempt, name="health-check")
    except TimeoutError:
        return False, "Target.Timeout", "Request timed out"
    except OSError as exc:
        return False, "Target.FailedHealthChecks", f"Health checks failed ({exc.strerror or exc})"


class HealthChecker:
    """Checks every target of every live instance on its group's interval, from one thread.

    ``targets()`` (called under the emulator's lock) lists what to check; the checks themselves run
    outside the lock, a few at a time, so a slow target never holds up the emulator.
    """

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.health: dict[tuple[str, str], TargetHealth] = {}
        #: (target group ARN, instance id) -> monotonic time its draining ends
        self.draining: dict[tuple[str, str], float] = {}
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
        self._thread: threading.Thread | None = None
        #: called under the lock after each round (the Auto Scaling groups' ELB health replacements)
        self.after_tick: Callable[[], None] | None = None

    def state(self, tg_arn: str, instance_id: str) -> TargetHealth:
        return self.health.setdefault((tg_arn, instance_id), TargetHealth())

    def drain(self, tg_arn: str, instance_id: str, delay: float) -> None:
        self.health.pop((tg_arn, instance_id), None)
        if delay > 0:
            self.draining[(tg_arn, instance_id)] = time.monotonic() + delay

    def is_draining(self, tg_arn: str, instance_id: str) -> bool:
        until = self.draining.get((tg_arn, instance_id))
        if until is None:
            return False
        if until <= time.monotonic():
            self.draining.pop((tg_arn, instance_id), None)
            return False
        return True

    def draining_in(self, tg_arn: str) -> list[str]:
        return [iid for (arn, iid) in list(self.draining) if arn == tg_arn and self.is_draining(arn, iid)]

    def start_thread(self, targets: Callable[[], list[tuple[str, str, str | None, Check]]]) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, args=(targets,), name="baker-health", daemon=True
            )
            self._thread.start()

    def _loop(self, targets: Callable[[], list[tuple[str, str, str | None, Check]]]) -> None:
        while True:
            time.sleep(0.25)
            try:
                self.tick(targets)
            except Exception:  # keep the emulator alive; the targets keep their last state
                log.exception("health checks failed")

    def tick(self, targets: Callable[[], list[tuple[str, str, str | None, Check]]]) -> None:
        now = time.monotonic()
        with self.lock:
            listed = targets()
            live = {(arn, iid) for arn, iid, _, _ in listed}
            for key in [k for k in self.health if k not in live]:
                del self.health[key]
            due = []
            for arn, iid, netns_file, check in listed:
                th = self.state(arn, iid)
                if netns_file is None:  # the instance is still booting: registration in progress
                    continue
                if now - th.last_check >= check.interval:
                    th.last_check = now
                    due.append((arn, iid, netns_file, check))
        futures = [(arn, iid, check, self._pool.submit(probe, ns, check)) for arn, iid, ns, check in due]
        for arn, iid, check, future in futures:
            ok, reason, description = future.result()
            with self.lock:
                if (arn, iid) in self.health:
                    self.health[(arn, iid)].record(ok, reason, description, check, time.monotonic())
        if self.after_tick is not None:
            with self.lock:
                self.after_tick()
