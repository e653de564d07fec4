"""Live instances: an instance of an AMI baked in this local cloud boots its image (systemd-nspawn).

Few and quick on purpose: one probe image (tests/livefleet.py), a handful of containers shared by
the tests of this file.
"""

from __future__ import annotations

import base64
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from baker.local import kernel
from baker.local.instances import LocalReach
from baker.verify import console_host_keys
from tests.livefleet import bake_probe, in_instance, layer_ami, runtime_env_user_data, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def probe_ami(local_cloud: Any) -> str:
    if not shutil.which("systemd-nspawn"):
        pytest.skip("missing on this machine: systemd-nspawn (Debian package systemd-container)")
    return bake_probe(local_cloud, "1.0.0")


def instance_status(local_cloud: Any, instance_id: str) -> dict[str, Any]:
    return next(i for i in local_cloud.status()["instances"] if i["instance_id"] == instance_id)


def booted(local_cloud: Any, instance_id: str, unit: str = "probe") -> int:
    """Wait until the unit is active inside the instance; its container's init PID."""

    def active() -> int | None:
        pid = instance_status(local_cloud, instance_id).get("container_pid")
        if pid and in_instance(pid, "systemctl", "is-active", unit).stdout.strip() == "active":
            return int(pid)
        return None

    return int(wait_for(f"{unit} active in {instance_id}", active, deadline=60))


def get(pid: int, path: str, port: int = 8080) -> tuple[int, str]:
    """GET 127.0.0.1:port inside the instance's own network namespace (the unit may still be binding)."""

    def fetch() -> tuple[int, str] | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        except ConnectionRefusedError:
            return None

    return wait_for(f"port {port} answering", lambda: kernel.in_netns(f"/proc/{pid}/ns/net", fetch), 20)


def test_an_instance_boots_its_image_and_runs_its_user_data(
    local_cloud: Any, probe_ami: str, tmp_path: Path
) -> None:
    """The image booted here is registered from a snapshot uploaded through the EBS direct APIs: a
    child of the probe image's root snapshot with only the blocks of a new version file."""
    ec2 = local_cloud.client("ec2")

    def new_version(root: Path) -> None:
        (root / "srv/broken/version").write_text("1.0.1-layer\n")

    layer = layer_ami(local_cloud, probe_ami, tmp_path, new_version)
    snapshot = ec2.describe_images(ImageIds=[layer])["Images"][0]["BlockDeviceMappings"][0]["Ebs"][
        "SnapshotId"
    ]
    user_data = runtime_env_user_data("PROBE_DIR=/srv/broken\n")
    others: list[str] = []
    iid = ec2.run_instances(ImageId=layer, MinCount=1, MaxCount=1, UserData=user_data)["Instances"][0][
        "InstanceId"
    ]
    try:
        pid = booted(local_cloud, iid)
        status = instance_status(local_cloud, iid)
        assert status["live"] and status["rss_mib"] > 0
        # the runtime env from user data (cloud-init, NoCloud seed) reached the unit
        assert in_instance(pid, "cat", "/etc/probe/runtime.env").stdout == "PROBE_DIR=/srv/broken\n"
        assert get(pid, "/version") == (200, "1.0.1-layer\n")  # the child's own block
        assert get(pid, "/healthz")[0] == 404  # /srv/broken has none: the parent's blocks
        assert get(pid, "/healthz")[0] == 404
        # the container has only loopback
        assert kernel.in_netns(f"/proc/{pid}/ns/net", kernel.net_interfaces) == ["lo"]

        # the console, as GetConsoleOutput gives it, vouches for the host key cloud-init generated
        def console_keys() -> list[str]:
            return console_host_keys(ec2.get_console_output(InstanceId=iid)["Output"])  # botocore decodes it

        keys = wait_for("host keys on the console", console_keys, 30)
        assert keys == LocalReach(local_cloud.state_dir).host_keys({"InstanceId": iid})

        ec2.stop_instances(InstanceIds=[iid])
        wait_for("container stopped", lambda: not instance_status(local_cloud, iid)["live"], 30)
        assert not kernel.alive(pid)
        ec2.start_instances(InstanceIds=[iid])
        again = booted(local_cloud, iid)
        assert again != pid
        assert get(again, "/healthz")[0] == 404, "the disk (runtime.env) survives a stop"
        # another instance, booted while this one's disk is mounted (its container starts with a
        # copy of every mount there is), runs on after this one is terminated
        other = ec2.run_instances(ImageId=layer, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        others.append(other)
        booted(local_cloud, other)
        # its systemd-nspawn killed outright (as after its shutdown grace): the container runs on
        nspawn = int(Path(f"/proc/{again}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.kill(nspawn, signal.SIGKILL)
        wait_for("nspawn gone", lambda: not kernel.alive(nspawn), 10)
        assert kernel.alive(again)
    finally:
        ec2.terminate_instances(InstanceIds=[iid])
    disk = local_cloud.state_dir / "instances" / iid
    try:
        wait_for("the instance's disk gone", lambda: not disk.exists(), 30)
        assert not kernel.alive(again), "terminated: its container ended, also without its nspawn"
        assert kernel.mounts_under(disk) == []
        # a mount still busy while the container's last processes exit is unmounted lazily: its
        # loop device goes when they are gone, a moment later; the other instance's container,
        # still running, does not keep this disk in use
        deadline = time.monotonic() + 30
        while (left := [x for x in loop_devices() if str(disk) in x]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"loop device still bound after the instance's disk was unmounted: {left}"
        assert instance_status(local_cloud, others[0])["live"]
    finally:
        ec2.terminate_instances(InstanceIds=others)
    ec2.deregister_image(ImageId=layer)
    ec2.delete_snapshot(SnapshotId=snapshot)
    assert not (local_cloud.state_dir / "snapshots" / f"{snapshot}.img").exists()


def loop_devices() -> list[str]:
    return subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout.splitlines()


def test_an_ami_without_content_stays_a_record(local_cloud: Any) -> None:
    from baker.local.moto.state import SOURCE_AMI_NAME

    ec2 = local_cloud.client("ec2")
    source = ec2.describe_images(Filters=[{"Name": "name", "Values": [SOURCE_AMI_NAME]}])["Images"][0]
    iid = ec2.run_instances(ImageId=source["ImageId"], MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    try:
        status = instance_status(local_cloud, iid)
        assert status["live"] is False and "record only" in status["note"]
    finally:
        ec2.terminate_instances(InstanceIds=[iid])


def test_live_instances_are_capped(local_cloud: Any, probe_ami: str) -> None:
    ec2 = local_cloud.client("ec2")
    before = local_cloud.settings()
    live = sum(1 for i in local_cloud.status()["instances"] if i.get("live"))
    local_cloud.settings(max_instances=live + 1)
    try:
        with pytest.raises(botocore.exceptions.ClientError) as caught:
            ec2.run_instances(ImageId=probe_ami, MinCount=2, MaxCount=2)
        assert caught.value.response["Error"]["Code"] == "InstanceLimitExceeded"
        assert "max-instances" in caught.value.response["Error"]["Message"]
    finally:
        local_cloud.settings(max_instances=before["max_instances"])


def test_a_deregistered_ami_loses_its_content(local_cloud: Any) -> None:
    ec2 = local_cloud.client("ec2")
    ami = bake_probe(local_cloud, "0.0.1-gone")
    content = local_cloud.state_dir / "images" / ami
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ec2.deregister_image(ImageId=ami)
    assert content.is_dir(), "kept while an instance still boots from it"
    ec2.terminate_instances(InstanceIds=[iid])
    wait_for("the image's content gone", lambda: not content.exists(), 30)


@pytest.fixture(scope="module")
def target_group(local_cloud: Any) -> Any:
    """A target group with the quickest checks AWS allows (5 s apart, 2 in a row decide)."""
    elb, ec2 = local_cloud.client("elbv2"), local_cloud.client("ec2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    tg = elb.create_target_group(
        Name="live-health",
        Protocol="HTTP",
        Port=8080,
        VpcId=vpc,
        HealthCheckPath="/healthz",
        HealthCheckIntervalSeconds=5,
        HealthCheckTimeoutSeconds=2,
        HealthyThresholdCount=2,
        UnhealthyThresholdCount=2,
        Matcher={"HttpCode": "200"},
    )["TargetGroups"][0]["TargetGroupArn"]
    elb.modify_target_group_attributes(
        TargetGroupArn=tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "5"}]
    )
    yield tg
    elb.delete_target_group(TargetGroupArn=tg)


def test_target_health_comes_from_real_checks_inside_each_instance(
    local_cloud: Any, probe_ami: str, target_group: str
) -> None:
    ec2, elb = local_cloud.client("ec2"), local_cloud.client("elbv2")
    good = ec2.run_instances(ImageId=probe_ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    bad = ec2.run_instances(
        ImageId=probe_ami, MinCount=1, MaxCount=1, UserData=runtime_env_user_data("PROBE_DIR=/srv/broken\n")
    )["Instances"][0]["InstanceId"]
    try:
        elb.register_targets(TargetGroupArn=target_group, Targets=[{"Id": good}, {"Id": bad}])

        def health() -> dict[str, dict[str, Any]]:
            found = elb.describe_target_health(TargetGroupArn=target_group)["TargetHealthDescriptions"]
            return {t["Target"]["Id"]: t["TargetHealth"] for t in found}

        assert {h["State"] for h in health().values()} == {"initial"}

        def decided() -> dict[str, dict[str, Any]] | None:
            found = health()
            return found if all(v["State"] != "initial" for v in found.values()) else None

        settled = wait_for("both targets decided", decided, 60)
        assert settled[good]["State"] == "healthy"
        assert settled[bad] == {
            "State": "unhealthy",
            "Reason": "Target.ResponseCodeMismatch",
            "Description": "Health checks failed with these codes: [404]",
        }
        # no knob anywhere: the emulator's fault-injection override is not set for this AMI
        image = next(i for i in local_cloud.status()["images"] if i["ami_id"] == probe_ami)
        assert image["health"] is None and image["content"]

        elb.deregister_targets(TargetGroupArn=target_group, Targets=[{"Id": good}])
        assert health()[good]["State"] == "draining"
        wait_for("draining over", lambda: good not in health(), 20)
    finally:
        ec2.terminate_instances(InstanceIds=[good, bad])


def test_an_elb_health_checked_group_replaces_an_instance_that_fails_its_checks(
    local_cloud: Any, probe_ami: str, target_group: str
) -> None:
    ec2, asg = local_cloud.client("ec2"), local_cloud.client("autoscaling")
    template = ec2.create_launch_template(
        LaunchTemplateName="live-elb-replace",
        LaunchTemplateData={
            "ImageId": probe_ami,
            "UserData": base64.b64encode(runtime_env_user_data("PROBE_DIR=/srv/broken\n").encode()).decode(),
        },
    )["LaunchTemplate"]["LaunchTemplateId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName="live-elb-replace",
        LaunchTemplate={"LaunchTemplateId": template, "Version": "1"},
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=subnet,
        TargetGroupARNs=[target_group],
        HealthCheckType="ELB",
        HealthCheckGracePeriod=1,  # moto reads 0 as its default, 300
    )

    def members() -> list[str]:
        groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["live-elb-replace"])
        return [i["InstanceId"] for i in groups["AutoScalingGroups"][0]["Instances"]]

    try:
        first = members()
        assert len(first) == 1 and instance_status(local_cloud, first[0])["live"]
        replaced = wait_for("the unhealthy instance replaced", lambda: (m := members()) != first and m, 60)
        assert len(replaced) == 1
        gone = ec2.describe_instances(InstanceIds=first)["Reservations"][0]["Instances"][0]
        assert gone["State"]["Name"] == "terminated"
    finally:
        asg.delete_auto_scaling_group(AutoScalingGroupName="live-elb-replace", ForceDelete=True)
        ec2.delete_launch_template(LaunchTemplateId=template)


def load_balanced(local_cloud: Any, name: str) -> tuple[str, dict[str, Any], str]:
    """A target group with quick checks (5 s apart, 2 in a row decide) and a load balancer whose
    HTTP listener on port 80 forwards to it: (target group ARN, load balancer, listener ARN)."""
    ec2, elb = local_cloud.client("ec2"), local_cloud.client("elbv2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    tg = elb.create_target_group(
        Name=name, Protocol="HTTP", Port=8080, VpcId=vpc, HealthCheckPath="/healthz",
        HealthCheckIntervalSeconds=5, HealthyThresholdCount=2, UnhealthyThresholdCount=2,
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    lb = elb.create_load_balancer(Name=name, Subnets=subnets, Type="application")["LoadBalancers"][0]
    listener = elb.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )["Listeners"][0]["ListenerArn"]
    return tg, lb, listener


def listener_url(local_cloud: Any, listener: str) -> str | None:
    """Where the listener answers on loopback (None while it does not)."""
    found = [b for b in local_cloud.status()["load_balancers"] if b["listener_arn"] == listener]
    return found[0]["url"] if found else None


def test_the_load_balancer_answers_on_loopback_and_forwards_to_healthy_targets(
    local_cloud: Any, probe_ami: str
) -> None:
    ec2, elb = local_cloud.client("ec2"), local_cloud.client("elbv2")
    other = bake_probe(local_cloud, "2.0.0")
    tg, lb, listener = load_balanced(local_cloud, "live-lb")
    ids = [
        ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, **extra)["Instances"][0]["InstanceId"]
        for ami, extra in (
            (probe_ami, {}),
            (other, {}),
            (other, {"UserData": runtime_env_user_data("PROBE_DIR=/srv/broken\n")}),
        )
    ]
    try:
        elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": i} for i in ids])
        base = wait_for("the listener's loopback port", lambda: listener_url(local_cloud, listener), 10)
        entry = next(b for b in local_cloud.status()["load_balancers"] if b["listener_arn"] == listener)
        assert entry["dns_name"] == lb["DNSName"] and base.startswith("http://127.0.0.1:")
        assert fetch(base, "/version")[0] == 503, "no healthy target yet"

        def healthy() -> list[str] | None:
            found = next(b for b in local_cloud.status()["load_balancers"] if b["listener_arn"] == listener)
            return found["healthy_targets"] if len(found["healthy_targets"]) == 2 else None

        assert sorted(wait_for("two healthy targets", healthy, 60)) == sorted(ids[:2])
        answers = [fetch(base, "/version") for _ in range(6)]
        assert sorted(set(answers)) == [(200, "1.0.0\n"), (200, "2.0.0\n")], "round robin, healthy only"
    finally:
        elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        ec2.terminate_instances(InstanceIds=ids)
        elb.delete_target_group(TargetGroupArn=tg)
    wait_for("the listener closed", lambda: listener_url(local_cloud, listener) is None, 10)


def fetch(base: str, path: str) -> tuple[int, str]:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_a_refresh_ends_an_old_instance_only_once_its_request_in_flight_is_answered(
    local_cloud: Any, probe_ami: str
) -> None:
    """Auto Scaling behind a load balancer (baker.local.moto.refresh): the replaced instance leaves
    the target group first, gets no new request, answers the one it is serving, then ends."""
    ec2, elb, asg = local_cloud.client("ec2"), local_cloud.client("elbv2"), local_cloud.client("autoscaling")
    v2 = bake_probe(local_cloud, "2.0.0")
    tg, lb, listener = load_balanced(local_cloud, "live-drain")
    elb.modify_target_group_attributes(
        TargetGroupArn=tg, Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "60"}]
    )
    template_id = ec2.create_launch_template(
        LaunchTemplateName="live-drain", LaunchTemplateData={"ImageId": probe_ami}
    )["LaunchTemplate"]["LaunchTemplateId"]
    ec2.create_launch_template_version(LaunchTemplateId=template_id, LaunchTemplateData={"ImageId": v2})
    asg.create_auto_scaling_group(
        AutoScalingGroupName="live-drain",
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "1"},
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=ec2.describe_subnets()["Subnets"][0]["SubnetId"],
        TargetGroupARNs=[tg],
    )

    def health() -> dict[str, str]:
        found = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in found}

    def state(instance_id: str) -> str:
        found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        return str(found["State"]["Name"])

    held: socket.socket | None = None
    try:
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["live-drain"])["AutoScalingGroups"][0]
        old = group["Instances"][0]["InstanceId"]
        wait_for("the v1 instance healthy", lambda: health().get(old) == "healthy", 60)
        base = wait_for("the listener's loopback port", lambda: listener_url(local_cloud, listener), 10)
        assert fetch(base, "/version") == (200, "1.0.0\n")
        # a user's request in flight to v1 (the load balancer picks the target when the user
        # connects); its last line is sent once the refresh has taken v1 out of the group
        host, port = base.removeprefix("http://").split(":")
        held = socket.create_connection((host, int(port)), timeout=30)
        held.sendall(b"GET /version HTTP/1.1\r\nHost: live-drain\r\n")
        asg.start_instance_refresh(
            AutoScalingGroupName="live-drain",
            DesiredConfiguration={"LaunchTemplate": {"LaunchTemplateId": template_id, "Version": "2"}},
        )
        wait_for("v1 deregistered, draining", lambda: health().get(old) == "draining", 30)
        time.sleep(2)  # rounds of the refresh: v1 goes on serving the request it holds
        assert state(old) == "running", "terminated with a request in flight"
        assert fetch(base, "/version") != (200, "1.0.0\n"), "a new request reached the draining v1"
        held.sendall(b"\r\n")
        answer = http.client.HTTPResponse(held)
        answer.begin()
        assert (answer.status, answer.read().decode()) == (200, "1.0.0\n")
        held.close()
        wait_for("v1 terminated once its request was answered", lambda: state(old) == "terminated", 15)

        def refreshed() -> str | None:
            found = asg.describe_instance_refreshes(AutoScalingGroupName="live-drain")["InstanceRefreshes"][0]
            return found["Status"] if found["Status"] not in ("Pending", "InProgress") else None

        assert wait_for("the refresh over", refreshed, 90) == "Successful"
        assert fetch(base, "/version") == (200, "2.0.0\n")
    finally:
        if held is not None:
            held.close()
        asg.delete_auto_scaling_group(AutoScalingGroupName="live-drain", ForceDelete=True)
        elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
        ec2.delete_launch_template(LaunchTemplateId=template_id)
        elb.delete_target_group(TargetGroupArn=tg)
