"""Blue/green's pure parts: the module's variables, the weights of a step, the applied state."""

from __future__ import annotations

from typing import Any

import pytest

from baker.config import DeploySettings
from baker.deploy import applied_strategy
from baker.deploy.bluegreen import Colors, arn_suffix, other, step_weights, variables

ELB = "arn:aws:elasticloadbalancing:us-east-1:123456789012"
OUTPUTS: dict[str, Any] = {
    "asg_name": "app-dev-green",
    "lb_dns_name": "app-dev-lb-1.elb.example",
    "blue_green": {
        "live_color": "green",
        "test_color": "green",
        "weights": {"blue": 0, "green": 100},
        "load_balancer_arn": f"{ELB}:loadbalancer/app/app-dev-lb/50dc6c495c0c9188",
        "listener_arn": "arn:listener",
        "test_listener_arn": "arn:test-listener",
        "test_listener_port": 8081,
        "colors": {
            c: {
                "asg_name": f"app-dev-{c}",
                "target_group_arn": f"{ELB}:targetgroup/{c}/73e2d6bc24d8a067",
                "launch_template_id": f"lt-{c}",
                "launch_template_version": 3,
                "image_id": f"ami-{c}",
                "capacity": 2 if c == "green" else 0,
                "runtime_env": {"A": c},
            }
            for c in ("blue", "green")
        },
    },
}


def test_colors_read_back_what_terraform_applied():
    colors = Colors.from_outputs(OUTPUTS)
    assert colors is not None
    assert (colors.live, colors.idle, colors.test_port) == ("green", "blue", 8081)
    assert colors.fleets["green"].launch_template_version == "3"
    assert colors.spec()["blue"] == {"image_id": "ami-blue", "capacity": 0, "runtime_env": {"A": "blue"}}


def test_a_rolling_state_has_no_colors():
    assert Colors.from_outputs({"asg_name": "app-dev", "blue_green": None}) is None
    assert applied_strategy({"asg_name": "app-dev"}) == "rolling"
    assert applied_strategy(OUTPUTS) == "blue_green"
    assert applied_strategy({}) is None


def test_steps_move_the_weights_to_the_new_color():
    assert step_weights("green", 10) == {"green": 10, "blue": 90}
    assert step_weights("blue", 100) == {"blue": 100, "green": 0}
    assert other("blue") == "green" and other("green") == "blue"


def test_variables_name_both_colors():
    spec = {"blue": {"image_id": "ami-1", "capacity": 2, "runtime_env": {}}}
    out = variables(spec, live="blue", test="green", weights={"blue": 100})
    assert out == {
        "colors": spec,
        "live_color": "blue",
        "test_color": "green",
        "weights": {"blue": 100, "green": 0},
    }


def test_cloudwatch_dimensions_of_arns():
    bg = OUTPUTS["blue_green"]
    assert arn_suffix(bg["load_balancer_arn"], "loadbalancer/") == "app/app-dev-lb/50dc6c495c0c9188"
    assert arn_suffix(bg["colors"]["blue"]["target_group_arn"], "") == "targetgroup/blue/73e2d6bc24d8a067"


@pytest.mark.parametrize("steps", [[], [10, 50], [50, 10, 100], [0, 100], [10, 10, 100], [150]])
def test_traffic_steps_must_rise_to_100(steps: list[int]):
    with pytest.raises(ValueError, match="traffic_steps"):
        DeploySettings(traffic_steps=steps)


def test_defaults_keep_rolling():
    d = DeploySettings(keep_previous="2h")
    assert (d.strategy, d.traffic_steps, d.keep_previous) == ("rolling", [100], 7200)
