"""status after real deploys (Terraform and the AWS provider against the emulator): the fleet the
ledger recorded is the one status reads, and it agrees with AWS until someone changes it by hand.

Its own app (ops-tf) and environment, so its fleet, ledger and AMIs meet no other test's. The
fleet costs about 70 s once (the provider's pauses on the load balancer).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker.cli import main
from baker.config import load_project
from baker.deploy import Deploy, Options
from baker.pin import Pin
from tests.conftest import copy_project, need_tools
from tests.integration import operator_cloud as oc

pytestmark = pytest.mark.integration

APP, ENV = "ops-tf", "ops-tf"


@pytest.fixture(scope="module")
def root(local_cloud: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_tools("terraform")
    root = copy_project(tmp_path_factory.mktemp("status-tf-project"), "terraform")
    settings = yaml.safe_load((root / "baker.yml").read_text())
    settings["app"]["name"] = APP
    (root / "baker.yml").write_text(yaml.safe_dump(settings))
    oc.project_environments(
        root, {ENV: {"aws": {"region": "us-east-1"}, "deploy": {"variables": {"name": "ops-tf-web"}}}}
    )
    return root


def deploy(root: Path, local_cloud: Any) -> Deploy:
    project = load_project(root)
    return Deploy(project, project.environment(ENV), local_cloud.aws(), local=True, poll_min=0.5, poll_max=2)


def status(root: Path, capsys: pytest.CaptureFixture) -> dict[str, Any]:
    assert main(["--project", str(root), "--local", "--output", "json", "status", "-e", ENV]) == 0
    return json.loads(capsys.readouterr().out)["environments"][0]


def test_status_agrees_with_aws_after_deploys_and_a_pin_and_sees_a_change_by_hand(
    local_cloud: Any, root: Path, capsys: pytest.CaptureFixture
):
    aws = local_cloud.aws()
    v1, v2 = oc.register(aws, "1.0.0", app=APP), oc.register(aws, "2.0.0", app=APP)
    assert deploy(root, local_cloud).run(v1, options=Options(timeout=180))["outcome"] == "healthy"
    second = deploy(root, local_cloud).run(v2, options=Options(timeout=180))
    assert second["outcome"] == "healthy"
    e = status(root, capsys)
    assert (e["ami_id"], e["version"], e["drift"], e["pinned"]) == (v2, "2.0.0", False, None)
    assert e["fleet"]["in_service"] == {v2: 2}
    assert e["fleet"]["launch_template_version"] == second["launch_template_version"]
    assert e["fleet"]["default_version"] == second["launch_template_version"]

    pinned = Pin(deploy(root, local_cloud)).pin(v1, reason="incident 7", options=Options(timeout=180))
    assert pinned["outcome"] == "healthy"
    e = status(root, capsys)
    assert (e["ami_id"], e["kind"], e["drift"]) == (v1, "pin", False)
    assert e["pinned"]["ami_id"] == v1 and e["pinned"]["reason"] == "incident 7"

    # someone points the template's default at another AMI with the console
    oc.new_version(aws, e["fleet"]["launch_template_id"], v2, default=True)
    e = status(root, capsys)
    assert e["drift"] is True and e["ami_id"] == v1
    assert any("default version" in r and v2 in r for r in e["drift_reasons"])
