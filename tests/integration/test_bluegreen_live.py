"""Blue/green with live instances behind the local load balancer, as a user checks it: v1 then v2
deployed and the users' listener answers v2; ``rollback`` makes it answer v1 with no instance
launched; a v3 whose app fails /healthz never answers a user request and the deploy exits 4.

The fleet speaks HTTPS (``certificate_arn``: the local cloud's own ACM certificate): users reach
443 over TLS, checked against the CA ACM gives as the certificate's chain (``curl --cacert``),
port 80 answers 301 to it, and the smoke checks go through the test listener over TLS too.

The app is the probe of tests/livefleet.py (images made without Packer); its own environment
(``bglive``), Terraform state and load balancer, one for the module. Each test asks for the
state it starts from (``released``, ``v2_live``, ``v1_live``), so it passes alone and in any order.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
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
from baker.local.moto import certificates
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
                "variables": {
                    "name": NAME,
                    "health_check_interval": 5,
                    "deregistration_delay": 5,
                    "certificate_arn": certificates.local_arn("us-east-1", "123456789012"),
                },
                "strategy": "blue_green",
                "unhealthy_timeout": 15,
                "step_seconds": 2,
            },
        }
        (root / "environments" / f"{ENV}.yml").write_text(yaml.safe_dump(data))
        self.root = root
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

    def users_port(self, port: int = 443) -> int:
        """The local port of the load balancer's listener on ``port`` (443: the users' HTTPS)."""
        elb = self.aws.client("elbv2")
        lb = elb.describe_load_balancers(Names=[f"{NAME}-lb"])["LoadBalancers"][0]
        arn = next(
            x["ListenerArn"]
            for x in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
            if x["Port"] == port
        )
        found = cloud.listener(self.aws.endpoint_url, arn)
        assert found is not None
        return int(str(found["url"]).rsplit(":", 1)[1])

    def ca_file(self) -> Path:
        """The certificate's chain as ACM gives it (GetCertificate): what a client trusts."""
        arn = certificates.local_arn("us-east-1", "123456789012")
        chain = self.aws.client("acm").get_certificate(CertificateArn=arn)["CertificateChain"]
        path = self.root / "ca.pem"
        path.write_text(chain)
        return path

    def users(self) -> Users:
        return Users(self.users_port(), tls=ssl.create_default_context(cafile=str(self.ca_file())))

    def instance_ids(self) -> set[str]:
        found = set()
        for res in self.aws.client("ec2").describe_instances()["Reservations"]:
            found |= {i["InstanceId"] for i in res["Instances"]}
        return found


@pytest.fixture(scope="module")
def live(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveFleet]:
    need_tools("terraform", "curl")
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


@pytest.fixture(scope="module")
def released(live: LiveFleet, images: dict[str, str]) -> dict[str, Any]:
    """v1 deployed to the new fleet, then v2: what each deploy said and what users (and curl) got
    after each."""
    first = live.deploy().run(images["1"], options=TIMEOUT)
    users = live.users()
    seen: dict[str, Any] = {"first": first, "after_first": {users.get() for _ in range(6)}}
    # as a user checks it: curl trusting the CA ACM gives, and plain HTTP sent on with a 301
    https = f"https://127.0.0.1:{live.users_port()}/version"
    seen["tls"] = subprocess.run(
        ["curl", "-sS", "--cacert", str(live.ca_file()), https], capture_output=True, text=True, check=False
    )
    seen["untrusted"] = subprocess.run(["curl", "-sS", https], capture_output=True, text=True, check=False)
    seen["plain"] = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
         f"http://127.0.0.1:{live.users_port(80)}/version?x=1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    seen["second"] = live.deploy().run(images["2"], options=TIMEOUT)
    seen["after_second"] = {users.get() for _ in range(6)}
    return seen


def live_ami(live: LiveFleet) -> str | None:
    release = live.deploy().ledger.live()
    return release.ami_id if release else None


@pytest.fixture
def v2_live(live: LiveFleet, images: dict[str, str], released: dict[str, Any]) -> None:
    """v2 live on one color, v1 kept on the other (the previous color): as the v1 -> v2 release
    leaves it, or v2 deployed again now."""
    if live_ami(live) != images["2"]:
        live.deploy().run(images["2"], options=TIMEOUT)
    assert live_ami(live) == images["2"]


@pytest.fixture
def v1_live(live: LiveFleet, images: dict[str, str], released: dict[str, Any]) -> None:
    """v1 live with all the users' traffic: as a rollback from v2 leaves it, or one made now."""
    if live_ami(live) != images["1"]:
        Rollback(live.deploy()).run(options=TIMEOUT)
    assert live_ami(live) == images["1"]


def test_v1_then_v2_and_the_load_balancer_answers_v2(released: dict[str, Any]):
    first, second = released["first"], released["second"]
    assert (first["outcome"], first["color"]) == ("healthy", "blue")
    assert released["after_first"] == {(200, "1")}
    tls = released["tls"]
    assert (tls.returncode, tls.stdout.strip()) == (0, "1"), tls.stderr
    assert released["untrusted"].returncode == 60, (
        "a client that does not trust the CA refuses the certificate"
    )
    code, location = released["plain"].stdout.split(" ", 1)
    assert code == "301" and location.startswith("https://127.0.0.1") and location.endswith("/version?x=1")
    assert (second["outcome"], second["color"]) == ("healthy", "green")
    smoke = {c["name"]: c for c in second["smoke"]}
    assert smoke["healthz answers"]["ok"] is True, "checked through the test route before users got it"
    assert released["after_second"] == {(200, "2")}


def test_rollback_answers_v1_again_with_no_instance_launched(live: LiveFleet, v2_live: None):
    before = live.instance_ids()
    with live.users() as users:
        result = Rollback(live.deploy()).run(options=TIMEOUT)
        time.sleep(1)
    assert (result["outcome"], result["color"], result["launched"]) == ("healthy", "blue", False)
    assert live.instance_ids() == before
    assert all(status == 200 for status, _ in users.answers), "no request failed"
    assert {users.get() for _ in range(6)} == {(200, "1")}


def test_a_v3_failing_healthz_never_gets_user_traffic_and_exits_4(
    live: LiveFleet, images: dict[str, str], v1_live: None
):
    with live.users() as users, pytest.raises(RolledBack) as info:
        live.deploy().run(images["3"], options=TIMEOUT)
    assert info.value.exit_code == 4
    assert "no user traffic reached it" in info.value.message
    assert users.answers and set(users.answers) == {(200, "1")}, "every user request answered by v1"
