"""A bake's receipt (baker/receipt.py): read only for the configuration it was written from.

The cache hit answered from a receipt runs against the local cloud in tests/integration/test_bake.py
(same answer as the full path, no configuration models imported, a changed setting loaded anew);
here, without a cloud, which changes make a receipt stale and what a stale one leads to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baker import receipt


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "environments").mkdir()
    (tmp_path / "baker.yml").write_text("app: {name: demo}\n")
    (tmp_path / "environments/defaults.yml").write_text("bake: {}\n")
    (tmp_path / "environments/dev.yml").write_text("aws: {region: us-east-1}\n")
    (tmp_path / "environments/prod.yml").write_text("aws: {region: eu-west-1}\n")
    return tmp_path.resolve()


@pytest.mark.parametrize(
    "change",
    [
        lambda root: (root / "baker.yml").write_text("app: {name: other}\n"),
        lambda root: (root / "environments/defaults.yml").write_text("bake: {instance_type: t3.large}\n"),
        lambda root: (root / "environments/defaults.yml").unlink(),
        lambda root: (root / "environments/dev.yml").write_text("aws: {region: us-east-2}\n"),
        # promote_from is checked against the environments there are
        lambda root: (root / "environments/staging.yml").write_text("aws: {region: us-east-1}\n"),
    ],
    ids=["baker.yml", "defaults.yml", "defaults.yml removed", "dev.yml", "a new environment"],
)
def test_a_change_to_the_configuration_makes_the_receipt_stale(project: Path, change: Any) -> None:
    configured = receipt.key(project, "dev")
    assert receipt.write(project, "dev", configured, {"env": "dev"})
    assert receipt.read(project, "dev") == (configured, {"key": configured, "env": "dev"})
    change(project)
    now, found = receipt.read(project, "dev")
    assert now != configured and found is None


def test_what_does_not_configure_the_environment_leaves_its_receipt_valid(project: Path) -> None:
    configured = receipt.key(project, "dev")
    receipt.write(project, "dev", configured, {"env": "dev"})
    (project / "environments/prod.yml").write_text("aws: {region: ap-south-1}\n")  # another env's file
    (project / "README.md").write_text("notes\n")
    assert receipt.read(project, "dev")[1] == {"key": configured, "env": "dev"}
    assert receipt.key(project, "prod") != configured


def test_a_receipt_is_not_kept_when_the_files_changed_during_the_bake(project: Path) -> None:
    before = receipt.key(project, "dev")
    receipt.write(project, "dev", before, {"env": "dev"})
    (project / "environments/dev.yml").write_text("aws: {region: us-west-2}\n")  # edited meanwhile
    assert receipt.write(project, "dev", before, {"env": "dev", "stale": True}) is False
    assert not receipt.path(project, "dev").exists(), "the old receipt goes too"


def test_no_answer_without_a_valid_receipt_or_when_a_checked_file_is_gone(project: Path) -> None:
    def no_aws(settings: dict[str, Any]) -> Any:
        raise AssertionError("AWS asked without a valid receipt")

    assert receipt.cache_hit(project, "dev", no_aws) == (receipt.key(project, "dev"), None)
    assert receipt.cache_hit(project, "../dev", no_aws) == (None, None)
    assert receipt.cache_hit(project / "nowhere", "dev", no_aws) == (None, None)
    template = project / "packer/ami.pkr.hcl.j2"
    template.parent.mkdir()
    template.write_text("source {}\n")
    configured = receipt.key(project, "dev")
    receipt.write(project, "dev", configured, {"files": [[str(template), False], [str(project), True]]})
    template.unlink()
    assert receipt.cache_hit(project, "dev", no_aws) == (configured, None)
