"""The story with a real defect: hello-web baked (real Packer, Ansible) with ``hello_unhealthy: true``
fails its /healthz for real on a live instance; its target turns unhealthy with no knob set, and
verify exits 7 on that AMI."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker.bake import Bake
from baker.config import load_project
from baker.errors import VerifyFailed
from baker.local.instances import LocalReach
from baker.verify import Verify
from tests.conftest import commit_all, copy_project, need_tools
from tests.livefleet import in_instance, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broken_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tools("packer", "ansible-playbook", "dpkg-deb", "git", "ssh-keygen")
    if not shutil.which("systemd-nspawn"):
        pytest.skip("missing on this machine: systemd-nspawn (Debian package systemd-container)")
    root = copy_project(
        tmp_path_factory.mktemp("broken-project"), "environments", "packer", "ansible", "examples/hello-web"
    )
    dev = root / "environments" / "dev.yml"
    data = yaml.safe_load(dev.read_text())
    data.setdefault("bake", {}).setdefault("ansible_vars", {})["hello_unhealthy"] = True
    dev.write_text(yaml.safe_dump(data))
    commit_all(root)
    return root


@pytest.fixture(scope="module")
def broken_ami(broken_project: Path, local_cloud: Any) -> str:
    project = load_project(broken_project)
    env = project.environment("dev")
    baked = Bake(
        project, env, local_cloud.aws(env.settings.aws.region), build_host=local_cloud.build_host
    ).run()
    return str(baked["ami_id"])


def test_an_app_that_fails_its_health_check_gets_real_unhealthy_targets(
    local_cloud: Any, broken_ami: str
) -> None:
    ec2, elb = local_cloud.client("ec2"), local_cloud.client("elbv2")
    vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
    tg = elb.create_target_group(
        Name="story-broken", Protocol="HTTP", Port=8080, VpcId=vpc, HealthCheckPath="/healthz",
        HealthCheckIntervalSeconds=5, HealthyThresholdCount=2, UnhealthyThresholdCount=2,
        Matcher={"HttpCode": "200"},
    )["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    iid = ec2.run_instances(ImageId=broken_ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    try:
        elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": iid}])

        def state() -> dict[str, Any] | None:
            found = elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"][0][
                "TargetHealth"
            ]
            return found if found["State"] != "initial" else None

        health = wait_for("the target's checks to decide", state, 60)
        assert health == {
            "State": "unhealthy",
            "Reason": "Target.ResponseCodeMismatch",
            "Description": "Health checks failed with these codes: [503]",
        }
        status = next(i for i in local_cloud.status()["instances"] if i["instance_id"] == iid)
        pid = status["container_pid"]
        assert in_instance(pid, "systemctl", "is-active", "hello-web").stdout.strip() == "active"
        image = next(i for i in local_cloud.status()["images"] if i["ami_id"] == broken_ami)
        assert image["health"] is None, "no fault-injection override: the app itself fails"
    finally:
        ec2.terminate_instances(InstanceIds=[iid])
        elb.delete_target_group(TargetGroupArn=tg)


def test_verify_exits_7_on_the_broken_image(local_cloud: Any, broken_project: Path, broken_ami: str) -> None:
    project = load_project(broken_project)
    stage = Verify(
        project,
        project.environment("dev"),
        local_cloud.aws(),
        reach=LocalReach(local_cloud.state_dir),
        boot_timeout=90,
    )
    with pytest.raises(VerifyFailed) as caught:
        stage.run(broken_ami)
    assert caught.value.exit_code == 7
    checks = {c["name"]: c for c in caught.value.details["checks"]}
    assert checks["service is active"]["ok"] is True
    assert checks["healthz answers"]["ok"] is False and "HTTP 503" in checks["healthz answers"]["output"]
