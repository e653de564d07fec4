"""A blue/green traffic step that sees real 5xx rolls back: the new color passes its health gate
and its smoke check (/healthz, through the test route) but answers 500 to user requests on
/version (the example app's ``HELLO_BROKEN_PATHS``, a runtime setting of the release). Users
send requests through the local load balancer during the step; the load balancer counts each
500 a green target answers, the emulator's CloudWatch serves the count as
``HTTPCode_Target_5XX_Count`` of green's target group, baker's step watch reads it there and
moves the weights back: exit 4, naming the count and ``deploy.max_5xx``.

Its own environment (``bg5xx``), Terraform state and load balancer; one instance per color;
images of the real example app made without Packer (tests/livefleet.py).
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from baker.config import load_project
from baker.deploy import Deploy, Options
from baker.errors import RolledBack
from baker.ledger import Ledger
from baker.local import cloud
from tests.conftest import copy_project, need_tools
from tests.livefleet import Users, bake_hello, blue_green_environment

pytestmark = pytest.mark.integration

ENV = "bg5xx"
NAME = "hello-web-bg5xx"
MAX_5XX = 2


class Fleet:
    def __init__(self, local_cloud: Any, root: Any) -> None:
        self.cloud = local_cloud
        self.root = root
        self.aws = local_cloud.aws("us-east-1")
        self.elb = self.aws.client("elbv2")
        self.configure({})

    def configure(self, runtime: dict[str, str]) -> None:
        data = blue_green_environment(
            NAME,
            ENV,
            "hello from bg5xx",
            runtime,
            unhealthy_timeout=15,
            traffic_steps=[50, 100],
            step_seconds=6,
            max_5xx=MAX_5XX,
        )
        (self.root / "environments" / f"{ENV}.yml").write_text(yaml.safe_dump(data))
        self.project = load_project(self.root)

    def deploy(self) -> Deploy:
        return Deploy(
            self.project,
            self.project.environment(ENV),
            self.aws,
            local=True,
            poll_min=0.5,
            poll_max=1,
            test_route=cloud.test_route(self.aws.endpoint_url),
        )

    def load_balancer(self) -> dict[str, Any]:
        return self.elb.describe_load_balancers(Names=[f"{NAME}-lb"])["LoadBalancers"][0]

    def users_listener(self) -> dict[str, Any]:
        listeners = self.elb.describe_listeners(LoadBalancerArn=self.load_balancer()["LoadBalancerArn"])
        return next(x for x in listeners["Listeners"] if x["Port"] == 80)

    def users_port(self) -> int:
        found = cloud.listener(self.aws.endpoint_url, self.users_listener()["ListenerArn"])
        assert found is not None
        return int(str(found["url"]).rsplit(":", 1)[1])

    def weights(self) -> dict[str, int]:
        """Target group ARN -> weight of the users' listener."""
        groups = self.users_listener()["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
        return {g["TargetGroupArn"]: g.get("Weight", 1) for g in groups}

    def in_service(self, group: str) -> set[str]:
        asg = self.aws.client("autoscaling")
        found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
        return {i["InstanceId"] for i in found[0]["Instances"] if i["LifecycleState"] == "InService"}


@pytest.fixture(scope="module")
def fleet(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    need_tools("terraform")
    if not shutil.which("systemd-nspawn"):
        pytest.skip("missing on this machine: systemd-nspawn (Debian package systemd-container)")
    fleet = Fleet(local_cloud, copy_project(tmp_path_factory.mktemp("bg5xx"), "environments", "terraform"))
    yield fleet
    # its live containers would run (and be health-checked) through the rest of the session
    asg = fleet.aws.client("autoscaling")
    for group in asg.describe_auto_scaling_groups(AutoScalingGroupNames=[NAME, f"{NAME}-green"])[
        "AutoScalingGroups"
    ]:
        asg.update_auto_scaling_group(
            AutoScalingGroupName=group["AutoScalingGroupName"], MinSize=0, DesiredCapacity=0
        )


def test_a_traffic_step_that_sees_5xx_moves_the_weights_back(fleet: Fleet):
    v1, v2 = bake_hello(fleet.cloud, "1"), bake_hello(fleet.cloud, "2")
    first = fleet.deploy().run(v1, options=Options(timeout=300))
    assert (first["outcome"], first["color"]) == ("healthy", "blue")
    blue_instances = fleet.in_service(NAME)
    users = Users(fleet.users_port())
    assert {users.get() for _ in range(4)} == {(200, "1")}

    # v2's release breaks /version for its users; /healthz (health gate, smoke check) stays fine
    fleet.configure({"HELLO_BROKEN_PATHS": "/version"})
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with Users(fleet.users_port()) as users, pytest.raises(RolledBack) as info:
        fleet.deploy().run(v2, options=Options(timeout=300))
    fleet.configure({})
    message = info.value.message
    assert info.value.exit_code == 4
    # the 50% step catches it unless the machine is so busy that the users' client sent too few
    # requests in those seconds; then the 100% step does: either way no step passes with 5xx
    step = re.search(r"traffic step (50|100)% to green failed: (\d+) 5xx answers from green's", message)
    assert step is not None, message
    assert f"(deploy.max_5xx: {MAX_5XX})" in message
    counted = int(step.group(2))
    assert counted > MAX_5XX

    # users saw green's 500s during the step, and v1 before and after; nothing else
    assert (500, "broken (HELLO_BROKEN_PATHS)") in users.answers
    assert set(users.answers) <= {(200, "1"), (500, "broken (HELLO_BROKEN_PATHS)")}
    assert {users.get() for _ in range(6)} == {(200, "1")}, "the weights are back on blue"

    groups = {
        tg["TargetGroupName"]: tg["TargetGroupArn"]
        for tg in fleet.elb.describe_target_groups(LoadBalancerArn=fleet.load_balancer()["LoadBalancerArn"])[
            "TargetGroups"
        ]
    }
    blue_tg, green_tg = groups[f"{NAME}-tg"], groups[f"{NAME}-gr-tg"]
    assert fleet.weights() == {blue_tg: 100, green_tg: 0}
    assert fleet.in_service(NAME) == blue_instances, "blue kept its instances: nothing was launched"
    assert fleet.in_service(f"{NAME}-green") == set(), "the failed color is scaled to zero"
    ledger = Ledger(fleet.aws, table="baker-state", app="hello-web", env=ENV)
    live = ledger.live()
    assert live is not None and (live.ami_id, live.color) == (v1, "blue")

    # what the load balancer counted is CloudWatch's, with AWS's dimensions
    lb_dim = {
        "Name": "LoadBalancer",
        "Value": fleet.load_balancer()["LoadBalancerArn"].split(":loadbalancer/")[1],
    }
    cw = fleet.aws.client("cloudwatch")

    def target_5xx(*dims: dict[str, str]) -> int:
        points = cw.get_metric_statistics(
            Namespace="AWS/ApplicationELB",
            MetricName="HTTPCode_Target_5XX_Count",
            Dimensions=list(dims),
            StartTime=since,
            EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        return int(sum(p["Sum"] for p in points))

    green_dims = [lb_dim, {"Name": "TargetGroup", "Value": green_tg.split(":")[-1]}]
    green_5xx = target_5xx(*green_dims)
    assert green_5xx >= counted, "every 500 a green target answered through the load balancer"
    assert green_5xx == sum(1 for status, _ in users.answers if status == 500)
    assert target_5xx(lb_dim, {"Name": "TargetGroup", "Value": blue_tg.split(":")[-1]}) == 0
    assert target_5xx(lb_dim) == green_5xx, "by load balancer alone: the sum over its target groups, once"
    data = cw.get_metric_data(
        MetricDataQueries=[
            {
                "Id": "green",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/ApplicationELB",
                        "MetricName": "HTTPCode_Target_5XX_Count",
                        "Dimensions": green_dims,
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=since,
        EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
    )["MetricDataResults"][0]
    assert int(sum(data["Values"])) == green_5xx
