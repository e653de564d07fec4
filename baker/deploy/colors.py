"""Blue/green's state as Terraform last applied it (its ``blue_green`` output): the two colors'
groups, the live and tested color, the listener's weights. Pure: read from outputs, turned back
into the module's variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

COLORS = ("blue", "green")


def other(color: str) -> str:
    return "green" if color == "blue" else "blue"


@dataclass(frozen=True)
class ColorGroup:
    """One color's group as Terraform last applied it (what AWS says of a fleet: baker.fleet.Fleet)."""

    color: str
    asg_name: str
    target_group_arn: str
    image_id: str
    capacity: int
    runtime_env: dict[str, str]
    launch_template_id: str | None = None
    launch_template_version: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "capacity": self.capacity, "runtime_env": dict(self.runtime_env)}


@dataclass(frozen=True)
class Colors:
    """The blue/green state of an environment as Terraform last applied it (its ``blue_green`` output)."""

    live: str
    test: str
    weights: dict[str, int]
    fleets: dict[str, ColorGroup]
    listener_arn: str
    test_listener_arn: str | None
    test_port: int | None
    load_balancer_arn: str | None
    lb_dns_name: str | None
    #: the ACM certificate the test listener speaks HTTPS with (None: plain HTTP)
    test_certificate: str | None = None

    @property
    def test_scheme(self) -> str:
        return "https" if self.test_certificate else "http"

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> Colors | None:
        bg = outputs.get("blue_green")
        if not isinstance(bg, dict):
            return None
        fleets = {
            c: ColorGroup(
                color=c,
                asg_name=f["asg_name"],
                target_group_arn=f["target_group_arn"],
                image_id=f["image_id"],
                capacity=int(f["capacity"]),
                runtime_env=dict(f.get("runtime_env") or {}),
                launch_template_id=f.get("launch_template_id"),
                launch_template_version=str(f.get("launch_template_version")),
            )
            for c, f in (bg.get("colors") or {}).items()
        }
        return cls(
            live=bg["live_color"],
            test=bg.get("test_color") or bg["live_color"],
            weights={c: int(w) for c, w in (bg.get("weights") or {}).items()},
            fleets=fleets,
            listener_arn=bg["listener_arn"],
            test_listener_arn=bg.get("test_listener_arn"),
            test_port=bg.get("test_listener_port"),
            load_balancer_arn=bg.get("load_balancer_arn"),
            lb_dns_name=outputs.get("lb_dns_name"),
            test_certificate=bg.get("certificate_arn")
            if bg.get("test_listener_protocol") == "HTTPS"
            else None,
        )

    @property
    def idle(self) -> str:
        return other(self.live)

    def spec(self) -> dict[str, dict[str, Any]]:
        return {c: f.spec() for c, f in self.fleets.items()}


def variables(
    spec: Mapping[str, Mapping[str, Any]], *, live: str, test: str, weights: Mapping[str, int]
) -> dict[str, Any]:
    """The module's blue/green variables (pure)."""
    return {
        "colors": {c: dict(s) for c, s in spec.items()},
        "live_color": live,
        "test_color": test,
        "weights": {c: int(weights.get(c, 0)) for c in COLORS},
    }


def step_weights(new: str, percent: int) -> dict[str, int]:
    """The users' listener's weights when ``new`` takes ``percent`` of the traffic (pure)."""
    return {new: percent, other(new): 100 - percent}


def arn_suffix(arn: str, marker: str) -> str:
    """The CloudWatch dimension of a load balancer (``app/...``) or target group (``targetgroup/...``)."""
    return arn.split(":", 5)[-1].removeprefix(marker) if marker else arn.split(":", 5)[-1]
