"""The blue/green story, told through the `baker` command as a release manager and an operator type
it, in an environment with ``deploy.strategy: blue_green``:

v1 is released (blue), v2 is released (green, tested through the test route, then given the
users); the load balancer answers v2. ``baker rollback`` makes it answer v1 again by weights, with
no instance launched. A v3 (v2's image with a runtime that fails /healthz and a greeting of its
own) goes to the idle color, fails its health gate and exits 4: a user client running the whole
time sees only v1 and v2 answer, and never v3's greeting. ``baker status`` and ``baker history``
tell it as it happened. Every step is a `python -m baker --local --output json ...` child process
against the session's local cloud; the test reads the load balancer the way a user does (HTTPS to
the listener's loopback URL that ``baker local status`` lists) and AWS through the emulator's API.

The fleet speaks HTTPS (``certificate_arn``: the local cloud's own ACM certificate): users reach
443 over TLS, checked against the CA that ACM gives as the certificate's chain (also with
``curl --cacert``; a client that does not trust it is refused), port 80 answers 301 to it, and
baker's smoke checks go through the test listener over TLS too.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker.local.moto import certificates
from tests.conftest import commit_all, copy_project, git, need_tools
from tests.harness import Baker
from tests.livefleet import Users, blue_green_environment, listener_port

pytestmark = pytest.mark.e2e

ENV = "bge2e"  # its own Terraform state and fleet
NAME = "hello-web-bge2e"
GREETING = "hello from bge2e"
CERTIFICATE = certificates.local_arn("us-east-1", "123456789012")
MAX_5XX = 2


def environment(runtime: dict[str, str] | None = None, **deploy: Any) -> dict[str, Any]:
    settings = {"step_seconds": 2, "unhealthy_timeout": 10, **deploy}
    data = blue_green_environment(NAME, ENV, GREETING, runtime, **settings)
    data["deploy"]["variables"]["certificate_arn"] = CERTIFICATE
    return data


@pytest.fixture(scope="module")
def baker(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baker]:
    need_tools("packer", "ansible-playbook", "dpkg-deb", "git", "ssh-keygen", "terraform", "curl")
    if not shutil.which("systemd-nspawn"):
        pytest.skip("missing on this machine: systemd-nspawn (Debian package systemd-container)")
    assert local_cloud.build_host  # the root filesystem, fetched from outside the namespace if not cached
    parts = ("environments", "packer", "ansible", "terraform", "examples/hello-web")
    root = copy_project(tmp_path_factory.mktemp("bge2e-project"), *parts)
    (root / "environments" / f"{ENV}.yml").write_text(yaml.safe_dump(environment()))
    commit_all(root)
    git(root, "tag", "v1.0.0")
    yield Baker(root)
    # the live containers would run (and be health-checked) through the rest of the session
    asg = local_cloud.client("autoscaling")
    names = [NAME, f"{NAME}-green"]
    for group in asg.describe_auto_scaling_groups(AutoScalingGroupNames=names)["AutoScalingGroups"]:
        asg.update_auto_scaling_group(
            AutoScalingGroupName=group["AutoScalingGroupName"], MinSize=0, DesiredCapacity=0
        )


def users(baker: Baker, local_cloud: Any, path: str = "/version") -> Users:
    """A user of the fleet: HTTPS to the users' listener (443) where `baker local status` lists it,
    trusting the CA that ACM gives as the certificate's chain."""
    port = listener_port(local_cloud.client("elbv2"), local_cloud.endpoint, f"{NAME}-lb", 443)
    code, status, err = baker("local", "status", local=False)
    assert code == 0, err
    assert f"https://127.0.0.1:{port}" in {b["url"] for b in status["load_balancers"]}, status
    return Users(port, path, tls=ssl.create_default_context(cafile=str(ca_file(baker, local_cloud))))


def ca_file(baker: Baker, local_cloud: Any) -> Path:
    chain = local_cloud.client("acm").get_certificate(CertificateArn=CERTIFICATE)["CertificateChain"]
    path = baker.project / ".baker" / "ca.pem"  # ignored by git: not an input of any package
    path.parent.mkdir(exist_ok=True)
    path.write_text(chain)
    return path


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", *args], capture_output=True, text=True, check=False)


def instance_ids(local_cloud: Any) -> set[str]:
    """Every instance the emulator ever ran in the account and region (a launch shows up here)."""
    reservations = local_cloud.client("ec2").describe_instances()["Reservations"]
    return {i["InstanceId"] for r in reservations for i in r["Instances"]}


def test_blue_green_release_rollback_by_weights_and_a_bad_release_no_user_sees(
    baker: Baker, local_cloud: Any
):
    # v1: the first blue/green release goes to blue and takes every user at once
    code, first, err = baker("release", "-e", ENV)
    assert code == 0, err
    v1 = first["ami_id"]
    assert (first["outcome"], first["color"], first["bake"]["version"]) == ("healthy", "blue", "1.0.0")
    versions = users(baker, local_cloud)
    assert {versions.get() for _ in range(4)} == {(200, "1.0.0")}
    # as a user checks it: curl trusting the CA that ACM gives; one that does not is refused; plain
    # HTTP is sent on to HTTPS with a 301
    https = f"https://127.0.0.1:{versions.port}/version"
    trusted = curl("--cacert", str(ca_file(baker, local_cloud)), https)
    assert (trusted.returncode, trusted.stdout.strip()) == (0, "1.0.0"), trusted.stderr
    assert curl(https).returncode == 60, "a client that does not trust the CA refuses the certificate"
    plain_port = listener_port(local_cloud.client("elbv2"), local_cloud.endpoint, f"{NAME}-lb", 80)
    plain = curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                 f"http://127.0.0.1:{plain_port}/version?x=1")  # fmt: skip
    code, location = plain.stdout.split(" ", 1)
    assert code == "301" and location.startswith("https://127.0.0.1") and location.endswith("/version?x=1")

    with versions:  # a user asking for /version through the users' listener, all along
        # v2: a new commit and tag, baked, verified, launched on green, tested, given the users
        git(baker.project, "commit", "-q", "--allow-empty", "-m", "v2")
        git(baker.project, "tag", "v2.0.0")
        code, second, err = baker("release", "-e", ENV)
        assert code == 0, err
        v2 = second["ami_id"]
        assert (second["outcome"], second["color"], second["previous_ami_id"]) == ("healthy", "green", v1)
        assert second["bake"]["cached"] is False and second["bake"]["version"] == "2.0.0"
        assert {c["name"]: c["ok"] for c in second["smoke"]}["healthz answers"] is True
        assert {versions.get() for _ in range(4)} == {(200, "2.0.0")}

        # rollback: the weights go back to blue, which kept its capacity: nothing is launched
        before = instance_ids(local_cloud)
        code, back, err = baker("rollback", "-e", ENV)
        assert code == 0, err
        assert (back["outcome"], back["ami_id"], back["color"], back["launched"]) == (
            "healthy",
            v1,
            "blue",
            False,
        )
        assert instance_ids(local_cloud) == before, "no instance launched"
        assert {versions.get() for _ in range(4)} == {(200, "1.0.0")}
        # users first: the listener moved back from the ledger and AWS, Terraform recorded it after
        assert back["traffic_first"] is True
        assert err.index("traffic: 100% on blue") < err.index("[terraform]"), err

        # v3: v2's image with a runtime whose app fails /healthz (and greets as v3): it goes to the
        # idle color, fails the health gate there and never reaches a user
        env_file = baker.project / "environments" / f"{ENV}.yml"
        env_file.write_text(
            yaml.safe_dump(environment({"HELLO_UNHEALTHY": "1", "HELLO_GREETING": "hello from v3"}))
        )
        try:
            with users(baker, local_cloud, path="/") as greetings:
                code, third, err = baker("release", "-e", ENV)
        finally:
            env_file.write_text(yaml.safe_dump(environment()))
        assert code == 4, err
        assert (third["ok"], third["outcome"], third["ami_id"], third["color"]) == (
            False,
            "rolled_back",
            v2,
            "green",
        )
        assert "[packer]" not in err, "v2's image by its recipe: nothing baked"
        assert "no user traffic reached it" in third["error"]
        assert third["rollback"]["ami_id"] == v1 and third["rollback"]["outcome"] == "healthy"
        assert {versions.get() for _ in range(4)} == {(200, "1.0.0")}

    assert greetings.answers and set(greetings.answers) == {(200, GREETING)}, "v3 answered no user"
    seen = set(versions.answers)
    assert seen == {(200, "1.0.0"), (200, "2.0.0")}, f"only v1 and v2 answered, and every request: {seen}"

    code, status, err = baker("status", "-e", ENV)
    assert code == 0, err
    (mine,) = status["environments"]
    assert (mine["ami_id"], mine["version"], mine["color"], mine["drift"]) == (v1, "1.0.0", "blue", False), (
        mine
    )

    code, history, err = baker("history", "-e", ENV)
    assert code == 0, err
    steps = [(r["kind"], r["ami_id"], r["color"], r["outcome"]) for r in history["releases"]]
    assert steps == [
        ("rollback", v1, "blue", "healthy"),
        ("release", v2, "green", "rolled_back"),
        ("rollback", v1, "blue", "healthy"),
        ("release", v2, "green", "healthy"),
        ("release", v1, "blue", "healthy"),
    ], steps

    # v4: v2's image with a runtime that breaks /version for its users (the example app's
    # HELLO_BROKEN_PATHS) while /healthz stays fine: health gate and smoke check pass, then the
    # 50% traffic step sees the 500s users get, as CloudWatch counts them, and moves the weights
    # back (the 100% step does when a busy machine sent too few requests in the first)
    blue_instances = in_service(local_cloud, NAME)
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    env_file.write_text(
        yaml.safe_dump(
            environment(
                {"HELLO_BROKEN_PATHS": "/version"}, traffic_steps=[50, 100], step_seconds=6, max_5xx=MAX_5XX
            )
        )
    )
    try:
        with users(baker, local_cloud) as broken:
            code, fourth, err = baker("release", "-e", ENV)
    finally:
        env_file.write_text(yaml.safe_dump(environment()))
    assert code == 4, err
    assert (fourth["outcome"], fourth["ami_id"], fourth["color"]) == ("rolled_back", v2, "green")
    failed = r"traffic step (50|100)% to green failed: (\d+) 5xx answers from green's"
    step = re.search(failed, fourth["error"])
    assert step is not None, fourth["error"]
    assert f"(deploy.max_5xx: {MAX_5XX})" in fourth["error"]
    counted = int(step.group(2))
    assert counted > MAX_5XX
    assert (500, "broken (HELLO_BROKEN_PATHS)") in broken.answers
    assert set(broken.answers) <= {(200, "1.0.0"), (500, "broken (HELLO_BROKEN_PATHS)")}
    assert {broken.get() for _ in range(4)} == {(200, "1.0.0")}, "the weights are back on blue"
    assert in_service(local_cloud, NAME) == blue_instances, "blue kept its instances: nothing launched"
    assert in_service(local_cloud, f"{NAME}-green") == set(), "the failed color is scaled to zero"

    # what the load balancer counted is CloudWatch's, with AWS's dimensions
    elb, cw = local_cloud.client("elbv2"), local_cloud.client("cloudwatch")
    lb_arn = elb.describe_load_balancers(Names=[f"{NAME}-lb"])["LoadBalancers"][0]["LoadBalancerArn"]
    groups = {
        g["TargetGroupName"]: g["TargetGroupArn"]
        for g in elb.describe_target_groups(LoadBalancerArn=lb_arn)["TargetGroups"]
    }
    lb_dim = {"Name": "LoadBalancer", "Value": lb_arn.split(":loadbalancer/")[1]}

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

    green_5xx = target_5xx(lb_dim, {"Name": "TargetGroup", "Value": groups[f"{NAME}-gr-tg"].split(":")[-1]})
    assert green_5xx >= counted, "every 500 a green target answered through the load balancer"
    assert green_5xx == sum(1 for status, _ in broken.answers if status == 500)
    assert target_5xx(lb_dim, {"Name": "TargetGroup", "Value": groups[f"{NAME}-tg"].split(":")[-1]}) == 0
    assert target_5xx(lb_dim) == green_5xx, "by load balancer alone: the sum over its target groups, once"


def in_service(local_cloud: Any, group: str) -> set[str]:
    asg = local_cloud.client("autoscaling")
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"]
    return {i["InstanceId"] for i in found[0]["Instances"] if i["LifecycleState"] == "InService"}
