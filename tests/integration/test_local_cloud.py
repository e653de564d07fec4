"""The local cloud as a whole: up, down, status, the health knob, and its network isolation.

The up/down tests start a second, separate cloud with its own namespace and state dir (the
shared one stays up for the rest of the session).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from baker.cli import main
from baker.local import cloud, kernel, netns
from baker.local.moto.state import SOURCE_AMI_NAME
from tests.livefleet import bake_probe, wait_for
from tests.localcloud import LocalCloud

pytestmark = pytest.mark.integration


def _mounts_under(path: Path) -> list[str]:
    root = str(path.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == root or p.startswith(root + "/")]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def second_cloud(isolated: str, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A separate cloud's state dir and namespace name; whatever the test leaves is taken down."""
    name = f"baker-t{os.getpid()}"
    state_dir = tmp_path / "cloud"
    try:
        yield state_dir, name
    finally:
        cloud.down(state_dir, name)
        netns.delete(name)


def _ec2_inside(name: str, fn: Any) -> Any:
    """Call the separate cloud's emulator from inside its namespace."""

    def work() -> Any:
        ec2 = boto3.client(
            "ec2",
            region_name="us-east-1",
            endpoint_url="http://127.0.0.1:5000",
            aws_access_key_id="123456789012",
            aws_secret_access_key="baker-local",
        )
        return fn(ec2)

    return cloud.in_netns(name, work)


def test_up_twice_is_harmless_and_down_leaves_nothing(second_cloud: tuple[Path, str]) -> None:
    state_dir, name = second_cloud
    first = cloud.up(state_dir, name, rootfs=False)
    second = cloud.up(state_dir, name, rootfs=False)

    assert first["running"] and not first["already_running"]
    assert second["already_running"] and second["emulator_pid"] == first["emulator_pid"]
    assert first["endpoint"] == "http://127.0.0.1:5000" and first["emulator_rss_mib"] > 0
    state = json.loads((state_dir / "state.json").read_text())
    assert state["netns"] == name and state["pids"]["emulator"]["pid"] == first["emulator_pid"]
    assert netns.interfaces(name) == ["lo"]
    names = _ec2_inside(
        name, lambda ec2: [i["Name"] for i in ec2.describe_images(Owners=["136693071363"])["Images"]]
    )
    assert names == [SOURCE_AMI_NAME]

    # something a build host would leave mounted under the state dir
    leftover = state_dir / "buildhost" / "leftover"
    leftover.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "baker-test", str(leftover)], check=True)

    result = cloud.down(state_dir)

    assert result["stopped"] == [{"name": "emulator", "pid": first["emulator_pid"]}]
    assert not _alive(first["emulator_pid"])
    assert _mounts_under(state_dir) == []
    assert not netns.exists(name)
    assert not (state_dir / "state.json").exists()
    again = cloud.down(state_dir)
    assert again["stopped"] == [] and not again["was_running"]


def test_down_and_up_work_after_a_crash(second_cloud: tuple[Path, str]) -> None:
    state_dir, name = second_cloud
    pid = cloud.up(state_dir, name, rootfs=False)["emulator_pid"]
    os.kill(pid, signal.SIGKILL)  # the emulator this test started
    os.waitpid(pid, 0)
    assert cloud.status(state_dir)["running"] is False

    restarted = cloud.up(state_dir, name, rootfs=False)
    assert restarted["running"] and restarted["emulator_pid"] != pid
    assert cloud.down(state_dir)["stopped"][0]["pid"] == restarted["emulator_pid"]
    assert not netns.exists(name)


def test_instances_addresses_are_unreachable_from_inside(second_cloud: tuple[Path, str]) -> None:
    state_dir, name = second_cloud
    cloud.up(state_dir, name, rootfs=False)

    def launch(ec2: Any) -> dict[str, Any]:
        ami = ec2.describe_images(Filters=[{"Name": "name", "Values": [SOURCE_AMI_NAME]}])["Images"][0][
            "ImageId"
        ]
        return ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]

    instance = _ec2_inside(name, launch)
    addresses = [a for a in (instance.get("PrivateIpAddress"), instance.get("PublicIpAddress")) if a]
    assert addresses, instance

    def try_connect() -> dict[str, str]:
        reached = {}
        for address in [*addresses, "10.0.0.1", "54.12.34.56", "8.8.8.8"]:
            with socket.socket() as s:
                s.settimeout(2)
                try:
                    s.connect((address, 22))
                    reached[address] = "connected"
                except OSError as exc:
                    assert exc.errno is not None
        return reached

    assert cloud.in_netns(name, try_connect) == {}


def test_down_leaves_no_container_mount_or_namespace(
    second_cloud: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not shutil.which("systemd-nspawn"):
        pytest.skip("missing on this machine: systemd-nspawn (Debian package systemd-container)")
    state_dir, name = second_cloud
    info = cloud.up(state_dir, name, rootfs=False)
    handle = LocalCloud(state_dir=state_dir, endpoint=info["endpoint"], netns=name)

    def launch() -> str:
        ami = bake_probe(handle, "9.9.9")
        ec2 = handle.client("ec2")
        return str(ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"])

    iid = cloud.in_netns(name, launch)

    def container() -> int | None:
        found = [i for i in cloud.status(state_dir)["instances"] if i["instance_id"] == iid]
        return found[0].get("container_pid") if found else None

    pid = wait_for("the instance's container", container, 30)
    # what a bake fetched of this cloud's snapshots (an app layer's base), and of one on AWS
    fetched = tmp_path / "cache" / "snapshots"
    fetched.mkdir(parents=True)
    monkeypatch.setenv("BAKER_CACHE_DIR", str(tmp_path / "cache"))
    ours = sorted(p.name.removesuffix(".img") for p in (state_dir / "snapshots").glob("snap-*.img"))
    assert ours
    for snapshot in [*ours, "snap-0fromaws"]:
        (fetched / f"{snapshot}.img").write_bytes(b"blocks")
        (fetched / f"{snapshot}.img.complete").write_text("1\n")
    result = cloud.down(state_dir)
    assert sorted(result["fetched_snapshots_removed"]) == ours
    assert sorted(p.name for p in fetched.iterdir()) == ["snap-0fromaws.img", "snap-0fromaws.img.complete"]
    assert not kernel.alive(pid)
    assert _mounts_under(state_dir) == [] and not netns.exists(name)
    assert not (state_dir / "instances").exists()
    assert not list(state_dir.rglob("*.img")), "the snapshots' blocks and the disks are freed"
    losetup = subprocess.run(["losetup", "-a"], capture_output=True, text=True, check=True).stdout
    assert str(state_dir) not in losetup
    assert (state_dir / "images").is_dir(), "images stay without --purge"
    assert result["images_purged"] == 0
    assert cloud.down(state_dir, purge=True)["images_purged"] == 1
    assert not (state_dir / "images").exists()


@pytest.fixture
def cli() -> Iterator[Any]:
    """baker's CLI in-process; its stderr log handler is put back afterwards (it holds pytest's capture)."""
    logger = logging.getLogger("baker")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    try:
        yield main
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


def test_status_and_health_knob_from_the_cli(
    local_cloud: Any, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ec2, elb = local_cloud.client("ec2"), local_cloud.client("elbv2")
    source = ec2.describe_images(Filters=[{"Name": "name", "Values": [SOURCE_AMI_NAME]}])["Images"][0][
        "ImageId"
    ]
    seed = ec2.run_instances(ImageId=source, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=seed, Name="cli-knob")["ImageId"]
    instance = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    tg = elb.create_target_group(Name="cli-knob", Protocol="HTTP", Port=8080, VpcId=vpc)["TargetGroups"][0][
        "TargetGroupArn"
    ]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": instance}])

    def state() -> str:
        return elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"][0]["TargetHealth"][
            "State"
        ]

    try:
        assert cli(["--output", "json", "local", "health", "--ami", ami, "--state", "unhealthy"]) == 0
        assert json.loads(capsys.readouterr().out) == {"ami_id": ami, "state": "unhealthy"}
        assert state() == "unhealthy"

        assert cli(["--local", "--output", "json", "local", "status"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["running"] and status["endpoint"] == local_cloud.endpoint
        assert {"ami_id": ami, "health": "unhealthy"}.items() <= next(
            i for i in status["images"] if i["ami_id"] == ami
        ).items()
        assert any(i["instance_id"] == instance for i in status["instances"])
    finally:
        assert cli(["local", "health", "--ami", ami, "--state", "reset"]) == 0
    assert state() in ("initial", "healthy")  # back to normal


def test_health_knob_refuses_unknown_states(
    local_cloud: Any, cli: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["local", "health", "--ami", "ami-12345678", "--state", "sick"]) == 2
    assert "sick" in capsys.readouterr().err


def test_without_root_the_local_cloud_says_so(
    monkeypatch: pytest.MonkeyPatch, cli: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli(["local", "up", "--state-dir", str(tmp_path)]) == 2
    assert "needs root" in capsys.readouterr().err
    assert not (tmp_path / "state.json").exists()


def test_the_emulator_refuses_to_listen_beyond_loopback(isolated: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "baker.local.emulator", "--host", "0.0.0.0", "--port", "5999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to run outside a loopback-only network namespace" in done.stderr
