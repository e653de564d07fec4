"""Blue/green against the local cloud, with the real Terraform and AWS provider.

One fleet for the module, in its own environment (``bg``) and Terraform state: it starts rolling,
switches to blue/green in place (the rolling fleet is blue, and keeps serving), takes blue/green
releases, failures and rollbacks, and is refused a switch back while it would move users. Weights,
colors and target health come from the emulator's API. Each test requests the state it starts
from: ``rolling`` (what the rolling fleet was before it switched), ``migrated`` (the switch),
``green_live`` or ``blue_live`` (the live color, the other kept): found as the test before left
it, or made now, so any test runs alone and in any order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from baker.config import load_project
from baker.deploy import Deploy, Options
from baker.errors import Refused, RolledBack
from baker.ledger import Ledger
from baker.local import cloud
from tests.conftest import copy_project, need_tools
from tests.localcloud import register_ami

pytestmark = pytest.mark.integration

REGION = "us-east-1"
ENV = "bg"
NAME = "hello-web-bg"
TIMEOUT = Options(timeout=120)


class Fleet:
    def __init__(self, cloud: Any, root: Path) -> None:
        self.cloud = cloud
        self.root = root
        self.aws = cloud.aws(REGION)
        self.ledger = Ledger(self.aws, table="baker-state", app="hello-web", env=ENV)
        self.configure(strategy="rolling")

    def configure(self, **deploy: Any) -> None:
        """Write environments/bg.yml with these deploy settings (the same Terraform state)."""
        data = {
            "runtime": {"env": {"HELLO_GREETING": "hello from bg"}},
            "deploy": {
                "backend": {
                    "bucket": "baker-tfstate-123456789012",
                    "key": "hello-web/bg.tfstate",
                    "region": REGION,
                },
                "variables": {"name": NAME},
                "unhealthy_timeout": 4,
                "step_seconds": 1,
                **deploy,
            },
        }
        (self.root / "environments" / f"{ENV}.yml").write_text(yaml.safe_dump(data))
        self.project = load_project(self.root)

    def ami(self, version: str) -> str:
        return register_ami(self.aws, version)

    def deploy(self) -> Deploy:
        return Deploy(
            self.project,
            self.project.environment(ENV),
            self.aws,
            local=True,
            poll_min=0.5,
            poll_max=2,
            test_route=cloud.test_route(self.aws.endpoint_url),
        )

    def weights(self) -> dict[str, int]:
        """Target group name -> weight of the users' listener (port 80)."""
        elb = self.aws.client("elbv2")
        lb = elb.describe_load_balancers(Names=[f"{NAME}-lb"])["LoadBalancers"][0]
        listener = next(
            x
            for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
            if x["Port"] == 80
        )
        action = listener["DefaultActions"][0]
        names = {
            tg["TargetGroupArn"]: tg["TargetGroupName"]
            for tg in elb.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
        }
        if "ForwardConfig" not in action:
            return {names[action["TargetGroupArn"]]: 1}
        return {
            names[t["TargetGroupArn"]]: t.get("Weight", 1) for t in action["ForwardConfig"]["TargetGroups"]
        }

    def group(self, name: str) -> dict[str, str]:
        """In-service instance id -> AMI of one group."""
        asg = self.aws.client("autoscaling")
        found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
        ids = (
            [i["InstanceId"] for i in found[0]["Instances"] if i["LifecycleState"] == "InService"]
            if found
            else []
        )
        if not ids:
            return {}
        out = {}
        for res in self.aws.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]:
            for inst in res["Instances"]:
                out[inst["InstanceId"]] = inst["ImageId"]
        return out

    def instance_ids(self) -> set[str]:
        """Every instance the emulator ever ran in this account and region (launches show up here)."""
        found = set()
        for res in self.aws.client("ec2").describe_instances()["Reservations"]:
            found |= {i["InstanceId"] for i in res["Instances"]}
        return found


BLUE, GREEN = NAME, f"{NAME}-green"
BLUE_TG, GREEN_TG = f"{NAME}-tg", f"{NAME}-gr-tg"


@pytest.fixture(scope="module")
def fleet(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    need_tools("terraform")
    return Fleet(
        local_cloud, copy_project(tmp_path_factory.mktemp("bg-project"), "environments", "terraform")
    )


@pytest.fixture(scope="module")
def rolling(fleet: Fleet) -> dict[str, Any]:
    """The rolling fleet's first deploy, and what it was before it switched to blue_green: the
    Terraform plan of its own release with the module, and the dry run of the switch. Every test
    that switches the fleet requests ``migrated``, which requests this: these looks come first."""
    fleet.configure(strategy="rolling")
    result = fleet.deploy().run(fleet.ami("1.0.0"), options=TIMEOUT)
    deploy = fleet.deploy()
    plan = deploy.handoff.plan(result["ami_id"], fleet.project.environment(ENV).settings.runtime.env)
    deploy.terraform.discard(plan)
    live_color = fleet.ledger.live().color
    fleet.configure(strategy="blue_green")
    try:
        switch = fleet.deploy().run(fleet.ami("1.5.0"), dry_run=True)
    finally:
        fleet.configure(strategy="rolling")
    return {"result": result, "plan": plan, "live_color": live_color, "switch": switch}


@pytest.fixture(scope="module")
def migrated(fleet: Fleet, rolling: dict[str, Any]) -> dict[str, Any]:
    """The rolling environment switched to blue_green, then v2 deployed: the first goes to green.
    What the groups, the weights and the ledger said right after."""
    fleet.configure(strategy="blue_green")
    before = fleet.group(BLUE)
    result = fleet.deploy().run(fleet.ami("2.0.0"), options=TIMEOUT)
    return {
        "result": result,
        "blue_before": before,
        "blue": fleet.group(BLUE),
        "green": fleet.group(GREEN),
        "weights": fleet.weights(),
        "live": fleet.ledger.live(),
    }


def live_color(fleet: Fleet, color: str) -> bool:
    """``color`` is live (all the weight, the ledger says so) and the other keeps its capacity."""
    live = fleet.ledger.live()
    kept = GREEN if color == "blue" else BLUE
    weights = {BLUE_TG: 100, GREEN_TG: 0} if color == "blue" else {BLUE_TG: 0, GREEN_TG: 100}
    return (
        live is not None
        and live.color == color
        and fleet.weights() == weights
        and len(fleet.group(kept)) == 2
    )


@pytest.fixture
def green_live(fleet: Fleet, migrated: dict[str, Any]) -> None:
    """green live, blue keeping its capacity (the previous color): as the switch leaves it, or a
    new release deployed now (to the idle green)."""
    fleet.configure(strategy="blue_green")
    if not live_color(fleet, "green"):
        fleet.deploy().run(fleet.ami("2.1.0"), options=TIMEOUT)
    assert live_color(fleet, "green")


@pytest.fixture
def blue_live(fleet: Fleet, migrated: dict[str, Any]) -> None:
    """blue live with all the weight: as a rollback or a failed release leaves it, or a new
    release deployed now (to the idle blue)."""
    fleet.configure(strategy="blue_green")
    live = fleet.ledger.live()
    if not (live and live.color == "blue" and fleet.weights() == {BLUE_TG: 100, GREEN_TG: 0}):
        fleet.deploy().run(fleet.ami("2.2.0"), options=TIMEOUT)
    live = fleet.ledger.live()
    assert live is not None and live.color == "blue" and len(fleet.group(BLUE)) == 2


def test_a_rolling_environment_plans_nothing_new_with_the_module(rolling: dict[str, Any]):
    assert rolling["result"]["outcome"] == "healthy"
    plan = rolling["plan"]
    assert plan.empty, plan.summary()
    assert rolling["live_color"] is None


def test_switching_to_blue_green_replaces_nothing(rolling: dict[str, Any]):
    result = rolling["switch"]
    assert result["outcome"] == "planned" and not result["would_refuse"]
    actions = {c["address"]: c["action"] for c in result["plan"]["changes"]}
    assert "delete" not in actions.values() and "replace" not in actions.values(), actions
    assert actions["aws_autoscaling_group.green[0]"] == "create"
    assert actions['aws_launch_template.this["green"]'] == "create"
    assert 'aws_launch_template.this["blue"]' not in actions, "blue's template (the rolling one) is untouched"
    assert result["color"] == "green"


def test_migrated_fleet_takes_a_blue_green_release_without_touching_blue(migrated: dict[str, Any]):
    result = migrated["result"]
    assert result["outcome"] == "healthy", result
    assert (result["color"], result["previous_color"], result["launched"]) == ("green", "blue", True)
    assert set(migrated["green"].values()) == {result["ami_id"]}
    assert len(migrated["green"]) == 2
    assert migrated["blue"] == migrated["blue_before"], "blue kept its instances (the previous color)"
    assert migrated["weights"] == {BLUE_TG: 0, GREEN_TG: 100}
    live = migrated["live"]
    assert (live.ami_id, live.color, live.asg_name) == (result["ami_id"], "green", GREEN)
    assert [s["percent"] for s in result["steps"]] == [100]


def test_rollback_by_weights_launches_nothing(fleet: Fleet, green_live: None):
    v1 = fleet.group(BLUE)
    instances = fleet.instance_ids()
    from baker.deploy.rollback import Rollback

    result = Rollback(fleet.deploy()).run(options=TIMEOUT)
    assert result["outcome"] == "healthy"
    assert (result["color"], result["launched"]) == ("blue", False)
    assert fleet.weights() == {BLUE_TG: 100, GREEN_TG: 0}
    assert fleet.instance_ids() == instances, "no instance launched"
    assert fleet.group(BLUE) == v1
    live = fleet.ledger.live()
    assert (live.kind, live.color, live.ami_id) == ("rollback", "blue", set(v1.values()).pop())
    # green keeps its capacity: rolling forward again is a weight flip too
    assert len(fleet.group(GREEN)) == 2


def test_a_failed_new_color_never_takes_user_traffic(fleet: Fleet, blue_live: None):
    live = fleet.ledger.live()
    bad = fleet.ami("3.0.0-broken")
    fleet.cloud.set_health(bad, "unhealthy")
    seen: list[dict[str, int]] = []
    deploy = fleet.deploy()
    deploy.on_poll = lambda state: seen.append(fleet.weights())
    with pytest.raises(RolledBack) as info:
        deploy.run(bad, options=TIMEOUT)
    assert info.value.exit_code == 4
    assert "no user traffic reached it" in info.value.message
    assert seen and all(w == {BLUE_TG: 100, GREEN_TG: 0} for w in seen), "weights stayed on the live color"
    assert info.value.details["rollback"]["by_weights"] is True
    assert fleet.weights() == {BLUE_TG: 100, GREEN_TG: 0}
    assert fleet.group(GREEN) == {}, "the failed color is scaled to zero"
    assert set(fleet.group(BLUE).values()) == {live.ami_id}
    releases = fleet.ledger.releases()
    assert (releases[0].kind, releases[0].color, releases[0].outcome) == ("rollback", "blue", "healthy")
    assert (releases[1].ami_id, releases[1].color, releases[1].outcome) == (bad, "green", "rolled_back")


def test_retire_keeps_the_previous_color_until_keep_previous(fleet: Fleet, blue_live: None):
    result = fleet.deploy().run(fleet.ami("5.0.0"), options=TIMEOUT)
    assert (result["outcome"], result["color"]) == ("healthy", "green")
    kept = fleet.deploy().retire()
    assert kept["retired"] is None and "keep_previous" in kept["reason"]
    assert len(fleet.group(BLUE)) == 2
    done = fleet.deploy().retire(force=True)
    assert done["retired"] == "blue"
    assert fleet.group(BLUE) == {}
    assert fleet.weights() == {BLUE_TG: 0, GREEN_TG: 100}
    # with the previous color gone, a rollback launches it again on its AMI
    before = fleet.instance_ids()
    from baker.deploy.rollback import Rollback

    back = Rollback(fleet.deploy()).run(options=TIMEOUT)
    assert (back["outcome"], back["color"], back["launched"]) == ("healthy", "blue", True)
    assert fleet.instance_ids() - before, "blue was launched again"
    assert fleet.weights() == {BLUE_TG: 100, GREEN_TG: 0}


def test_switching_back_to_rolling_is_refused_while_it_would_move_users(fleet: Fleet, blue_live: None):
    assert fleet.ledger.live().color == "blue"
    fleet.configure(strategy="rolling")
    try:
        with pytest.raises(Refused) as info:
            fleet.deploy().run(fleet.ami("6.0.0"), options=TIMEOUT)
    finally:
        fleet.configure(strategy="blue_green")
    assert info.value.exit_code == 6
    assert "switching deploy.strategy from blue_green to rolling" in info.value.message
    assert "aws_autoscaling_group.green[0]" in info.value.message and "--allow-replace" in info.value.message
    assert fleet.weights() == {BLUE_TG: 100, GREEN_TG: 0}
