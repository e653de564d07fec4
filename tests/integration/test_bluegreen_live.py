"""Blue/green with live instances behind the local load balancer, as a user checks it: v1 then v2
deployed and the users' listener answers v2; ``rollback`` makes it answer v1 with no instance
launched; a v3 whose app fails /healthz never answers a user request and the deploy exits 4.

The app is the probe of tests/livefleet.py (images made without Packer); its own environment
(``bglive``), Terraform state and load balancer, one for the module. Tests run in file order.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker.config import load_project
from baker.deploy import Deploy, Options
from baker.deploy.rollback import Rollback
from baker.errors import RolledBack
from baker.local import cloud
from tests.conftest import copy_project, need_tools
from tests.livefleet import Users, bake_probe

pytestmark = pytest.mark.integration

ENV = "bglive"
NAME = "hello-web-bglive"
TIMEOUT = Options(timeout=300)


class LiveFleet:
    def __init__(self, local_cloud: Any, root: Path) -> None:
        self.cloud = local_cloud
        self.aws = local_cloud.aws("us-east-1")
        data = {
            "runtime": {"env": {"HELLO_GREETING": "hello from bglive"}},
            "deploy": {
                "backend": {
                    "bucket": "baker-tfstate-123456789012",
                    "key": "hello-web/bglive.tfstate",
                    "region": "us-east-1",
                },
                "variables": {"name": NAME, "health_check_interval": 5, "deregistration_delay": 5},
                "strategy": "blue_green",
                "unhealthy_timeout": 15,
                "step_seconds": 2,
            },
        }
        (root / "environments" / f"{ENV}.yml").write_text(yaml.safe_dump(data))
        self.project = load_project(root)

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

    def users_port(self) -> int:
        elb = self.aws.client("elbv2")
        lb = elb.describe_load_balancers(Names=[f"{NAME}-lb"])["LoadBalancers"][0]
        arn = next(
            x["ListenerArn"]
            for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
            if x["Port"] == 80
        )
        found = cloud.listener(self.aws.endpoint_url, arn)
        assert found is not None
        return int(str(found["url"]).rsplit(":", 1)[1])

    def instance_ids(self) -> set[str]:
        found = set()
        for res in self.aws.client("ec2").describe_instances()["Reservations"]:
            found |= {i["InstanceId"] for i in res["Instances"]}
        return found


@pytest.fixture(scope="module")
def live(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFleet]:
    need_tools("terraform")
    if not shutil.which("systemd-nspawn"):
        pytest.skip("missing on this machine: systemd-nspawn (Debian package systemd-container)")
    fleet = LiveFleet(
        local_cloud, copy_project(tmp_path_factory.mktemp("bglive"), "environments", "terraform")
    )
    yield fleet
    # the live containers would go on running (and being health-checked) for the rest of the
    # session: scale both colors to zero
    asg = fleet.aws.client("autoscaling")
    names = [NAME, f"{NAME}-green"]
    for group in asg.describe_auto_scaling_groups(AutoScalingGroupNames=names)["AutoScalingGroups"]:
        asg.update_auto_scaling_group(
            AutoScalingGroupName=group["AutoScalingGroupName"], MinSize=0, DesiredCapacity=0
        )


@pytest.fixture(scope="module")
def images(live: LiveFleet) -> dict[str, str]:
    return {
        "1": bake_probe(live.cloud, "1"),
        "2": bake_probe(live.cloud, "2"),
        "3": bake_probe(live.cloud, "3", healthy=False),
    }


def test_v1_then_v2_and_the_load_balancer_answers_v2(live: LiveFleet, images: dict[str, str]):
    first = live.deploy().run(images["1"], options=TIMEOUT)
    assert (first["outcome"], first["color"]) == ("healthy", "blue")
    users = Users(live.users_port())
    assert {users.get() for _ in range(6)} == {(200, "1")}
    second = live.deploy().run(images["2"], options=TIMEOUT)
    assert (second["outcome"], second["color"]) == ("healthy", "green")
    smoke = {c["name"]: c for c in second["smoke"]}
    assert smoke["healthz answers"]["ok"] is True, "checked through the test route before users got it"
    assert {users.get() for _ in range(6)} == {(200, "2")}


def test_rollback_answers_v1_again_with_no_instance_launched(live: LiveFleet, images: dict[str, str]):
    before = live.instance_ids()
    with Users(live.users_port()) as users:
        result = Rollback(live.deploy()).run(options=TIMEOUT)
        time.sleep(1)
    assert (result["outcome"], result["color"], result["launched"]) == ("healthy", "blue", False)
    assert live.instance_ids() == before
    assert all(status == 200 for status, _ in users.answers), "no request failed"
    assert {users.get() for _ in range(6)} == {(200, "1")}


def test_a_v3_failing_healthz_never_gets_user_traffic_and_exits_4(live: LiveFleet, images: dict[str, str]):
    with Users(live.users_port()) as users, pytest.raises(RolledBack) as info:
        live.deploy().run(images["3"], options=TIMEOUT)
    assert info.value.exit_code == 4
    assert "no user traffic reached it" in info.value.message
    assert users.answers and set(users.answers) == {(200, "1")}, "every user request answered by v1"
