"""The plan safety gate and the rollout assessment, on plans captured from real Terraform runs.

The JSON files in deploy_plans/ are ``terraform show -json`` output (Terraform 1.11.4, AWS
provider 5.100.0, against the local cloud), cut to the keys baker reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baker.deploy import Rollout, Watch, assess, duration, gate, plan_text
from baker.errors import Refused
from baker.plan import parse_plan

PLANS = Path(__file__).parent / "deploy_plans"


def plan(name: str):
    return parse_plan(json.loads((PLANS / f"{name}.json").read_text()), f"{name}.tfplan")


def test_an_ami_change_updates_the_launch_template_and_the_group_in_place():
    p = plan("ami_change")
    assert {c.address: c.kind for c in p.changes} == {
        "aws_launch_template.this": "update",
        "aws_autoscaling_group.this": "update",
    }
    lt = next(c for c in p.changes if c.address == "aws_launch_template.this")
    assert "image_id" in lt.attributes
    assert gate(p) == []


def test_a_plan_replacing_the_fleet_or_load_balancer_is_refused():
    p = plan("rename_replaces")
    with pytest.raises(Refused) as info:
        gate(p)
    assert info.value.exit_code == 6
    message = info.value.message
    for address in ("aws_autoscaling_group.this", "aws_lb.this", "aws_lb_target_group.this"):
        assert address in message
    assert "aws_security_group.lb" not in message  # only the fleet, LB and target group are guarded
    assert "--allow-replace" in message
    assert info.value.details["outcome"] == "refused"


def test_allow_replace_lets_it_through_and_says_what_it_allowed():
    unsafe = gate(plan("rename_replaces"), allow_replace=True)
    assert "aws_lb.this (replace)" in unsafe


def test_the_first_create_is_safe():
    p = plan("first_create")
    assert p.counts == {"create": 7, "update": 0, "replace": 0, "delete": 0}
    assert gate(p) == []


def test_dry_run_summary_names_every_change():
    text = plan_text(plan("rename_replaces"))
    assert text.splitlines()[0] == "plan: 0 to create, 0 to update, 7 to replace, 0 to delete"
    assert "replace  aws_autoscaling_group.this" in text


def _group(instances: dict[str, str], desired: int) -> dict:
    return {
        "DesiredCapacity": desired,
        "Instances": [{"InstanceId": i, "LifecycleState": s} for i, s in instances.items()],
    }


def _targets(states: dict[str, str]) -> list[dict]:
    return [{"Target": {"Id": i, "Port": 8080}, "TargetHealth": {"State": s}} for i, s in states.items()]


def test_rollout_is_done_when_every_desired_instance_is_new_and_healthy():
    r = assess(
        "ami-new",
        _group({"i-1": "InService", "i-2": "InService"}, 2),
        _targets({"i-1": "healthy", "i-2": "healthy", "i-0": "draining"}),
        {"i-1": "ami-new", "i-2": "ami-new", "i-0": "ami-old"},
        {"Status": "Successful", "PercentageComplete": 100},
    )
    assert r.done and r.failed is None
    assert r.line(130) == "2/2 healthy on ami-new, refresh Successful 100%, 2m10s"


def test_rollout_waits_while_old_instances_serve_or_new_ones_start():
    r = assess(
        "ami-new",
        _group({"i-1": "InService", "i-2": "InService", "i-3": "Pending"}, 2),
        _targets({"i-1": "healthy", "i-2": "initial"}),
        {"i-1": "ami-new", "i-2": "ami-old", "i-3": "ami-new"},
        {"Status": "InProgress", "PercentageComplete": 50},
    )
    assert not r.done and r.failed is None
    assert r.line(5) == "1/2 healthy on ami-new, 1 on older AMIs, refresh InProgress 50%, 5s"
    assert r.live() == "1 on ami-new (1 healthy); 1 on ami-old (1 initial)"


def test_unhealthy_new_instances_are_counted_and_a_failed_refresh_fails_the_rollout():
    r = assess(
        "ami-bad",
        _group({"i-1": "InService", "i-2": "InService"}, 2),
        _targets({"i-1": "unhealthy", "i-2": "healthy"}),
        {"i-1": "ami-bad", "i-2": "ami-good"},
        {"Status": "Failed"},
    )
    assert r.new_states == {"unhealthy": 1}
    assert r.failed == "the instance refresh ended Failed"
    assert not r.done


def test_no_refresh_at_all_is_fine_when_the_fleet_already_runs_the_ami():
    r = Rollout("ami-a", 1, {"healthy": 1}, 0, None, None)
    assert r.done


def test_durations_read_like_a_clock():
    assert duration(9.7) == "9s"
    assert duration(130) == "2m10s"


def _bad(**states: int) -> Rollout:
    return Rollout("ami-bad", 2, states, 1, "InProgress", 50)


def test_a_new_ami_without_a_healthy_target_fails_early_while_the_group_replaces_its_instances():
    watch = Watch(None, "asg", "tg", unhealthy_timeout=60)  # type: ignore[arg-type]  # no AWS call here
    since: list[float] = []
    assert watch._stuck(_bad(initial=1), since, 0) is None  # starting up: no clock yet
    assert watch._stuck(_bad(unhealthy=1), since, 10) is None  # the clock starts
    assert watch._stuck(_bad(initial=1), since, 40) is None  # replaced; the replacement starts over
    assert watch._stuck(_bad(unhealthy=1), since, 69) is None
    assert watch._stuck(_bad(unhealthy=1), since, 70) == (
        "no target on ami-bad became healthy in the 1m00s since one reported unhealthy "
        "(deploy.unhealthy_timeout: 60s)"
    )


def test_a_healthy_target_of_the_new_ami_stops_the_early_failure_clock():
    watch = Watch(None, "asg", "tg", unhealthy_timeout=60)  # type: ignore[arg-type]
    since: list[float] = []
    watch._stuck(_bad(unhealthy=2), since, 0)
    assert watch._stuck(_bad(healthy=1, unhealthy=1), since, 30) is None  # it can work: deadline rules
    assert watch._stuck(_bad(unhealthy=1), since, 50) is None  # a new clock from here
    assert watch._stuck(_bad(unhealthy=1), since, 100) is None
    assert watch._stuck(_bad(unhealthy=1), since, 110) is not None
    never = Watch(None, "asg", "tg", unhealthy_timeout=None)  # type: ignore[arg-type]
    since = []
    assert all(never._stuck(_bad(unhealthy=2), since, t) is None for t in (0, 600, 6000))


def test_a_tainted_first_create_may_be_replaced_only_while_nothing_ever_served():
    from baker.plan import Change, Plan

    tainted = Change("aws_lb.this", "aws_lb", ("delete", "create"), reason="replace_because_tainted")
    other = Change("aws_lb_target_group.this", "aws_lb_target_group", ("delete", "create"))
    interrupted_first = Plan(path=PLANS / "x.tfplan", changes=(tainted,))
    assert gate(interrupted_first, never_served=True) == ["aws_lb.this (replace)"]
    with pytest.raises(Refused):
        gate(interrupted_first, never_served=False)  # it served once: behind --allow-replace
    with pytest.raises(Refused):
        gate(Plan(path=PLANS / "x.tfplan", changes=(tainted, other)), never_served=True)
