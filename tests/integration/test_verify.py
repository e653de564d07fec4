"""verify against live instances: paramiko over a socket inside the instance's namespace, host key
from the instance's disk, smoke checks of baker.yml, the AMI tagged only when all pass."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import yaml

from baker.config import load_project
from baker.errors import VerifyFailed
from baker.local.instances import LocalReach
from baker.verify import TAG, Verify
from tests.conftest import copy_project
from tests.livefleet import bake_probe

pytestmark = pytest.mark.integration

CHECKS = [
    {"name": "probe is active", "command": "systemctl is-active probe"},
    {"name": "healthz answers", "http": "http://127.0.0.1:8080/healthz", "expect": "ok"},
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not shutil.which("systemd-nspawn"):
        pytest.skip("missing on this machine: systemd-nspawn (Debian package systemd-container)")
    root = copy_project(tmp_path_factory.mktemp("verify"), "environments")
    data = yaml.safe_load((root / "baker.yml").read_text())
    data["smoke_checks"] = CHECKS
    (root / "baker.yml").write_text(yaml.safe_dump(data))
    return load_project(root)


def verify(local_cloud: Any, project: Any) -> Verify:
    return Verify(
        project,
        project.environment("dev"),
        local_cloud.aws(),
        reach=LocalReach(local_cloud.state_dir),
        boot_timeout=90,
    )


def leftovers(local_cloud: Any) -> dict[str, list[str]]:
    ec2 = local_cloud.client("ec2")
    pairs = [
        k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith("baker-verify")
    ]
    groups = [
        g["GroupName"]
        for g in ec2.describe_security_groups()["SecurityGroups"]
        if g["GroupName"].startswith("baker-verify")
    ]
    running = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["baker-verify-*"]}])[
            "Reservations"
        ]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    return {"key_pairs": pairs, "security_groups": groups, "instances": running}


def test_verify_passes_and_tags_the_ami(local_cloud: Any, project: Any) -> None:
    ami = bake_probe(local_cloud, "3.0.0")
    result = verify(local_cloud, project).run(ami)
    assert result["verified"] is True
    assert [(c["name"], c["ok"]) for c in result["checks"]] == [(c["name"], True) for c in CHECKS]
    assert result["checks"][0]["output"] == "active"
    assert "HTTP 200" in result["checks"][1]["output"]
    tags = {
        t["Key"]: t["Value"]
        for t in local_cloud.client("ec2").describe_images(ImageIds=[ami])["Images"][0]["Tags"]
    }
    assert tags[TAG] == result["tag"] and "checks:" in tags[TAG]
    assert leftovers(local_cloud) == {"key_pairs": [], "security_groups": [], "instances": []}


def test_a_failing_check_exits_7_and_leaves_nothing(local_cloud: Any, project: Any) -> None:
    ami = bake_probe(local_cloud, "3.0.1-broken", healthy=False)
    with pytest.raises(VerifyFailed) as caught:
        verify(local_cloud, project).run(ami)
    assert caught.value.exit_code == 7
    checks = caught.value.details["checks"]
    assert [c["ok"] for c in checks] == [True, False]
    assert "HTTP 404" in checks[1]["output"]
    images = local_cloud.client("ec2").describe_images(ImageIds=[ami])["Images"][0]
    assert TAG not in {t["Key"] for t in images.get("Tags", [])}
    assert leftovers(local_cloud) == {"key_pairs": [], "security_groups": [], "instances": []}
