"""`baker doctor --local` against the local cloud: everything an operator needs is there (exit 0).

On the local cloud a missing state bucket or table counts as ready: the local cloud starts empty
and the first deploy creates both there. Once they exist, doctor says so; a source AMI that does
not resolve fails its check with what to do (exit 2).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from baker.cli import main
from tests.conftest import copy_project, need_tools

pytestmark = pytest.mark.integration

BUCKET = "baker-doctor-test-state"
TABLE = "baker-doctor-test-state"


def doctor(project: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["--project", str(project), "--local", "--output", "json", "doctor", *args])
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    return code, json.loads(lines[-1]) if lines else {}, err.getvalue()


def checks(result: dict[str, Any], env: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in result["checks"] if c["env"] == env}


def edit(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_doctor_on_the_repository_exits_0(repo: Path, local_cloud: Any) -> None:
    need_tools("packer", "ansible-playbook", "terraform", "dpkg-deb")
    code, r, err = doctor(repo, "-e", "dev")
    assert code == 0, err
    assert r["ok"] is True and r["environments"] == ["dev"]
    dev = checks(r, "dev")
    assert set(dev) == {"AWS identity", "terraform backend bucket", "state table", "source AMI"}
    assert "account 123456789012" in dev["AWS identity"]["detail"]
    assert dev["source AMI"]["detail"].startswith("ami-")


def test_doctor_sees_the_bucket_and_table_once_they_exist(tmp_path: Path, local_cloud: Any) -> None:
    need_tools("packer", "ansible-playbook", "terraform", "dpkg-deb")
    project = copy_project(tmp_path, "environments", "terraform")  # doctor reads the module's provider range
    edit(project / "environments/dev.yml", lambda d: d["deploy"]["backend"].update(bucket=BUCKET))
    edit(project / "baker.yml", lambda d: d["state"].update(table=TABLE))
    code, r, err = doctor(project, "-e", "dev")
    assert code == 0, err
    assert "first deploy creates it" in checks(r, "dev")["terraform backend bucket"]["detail"]
    assert "first deploy creates it" in checks(r, "dev")["state table"]["detail"]

    local_cloud.client("s3").create_bucket(Bucket=BUCKET)
    local_cloud.client("dynamodb").create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "lock_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "lock_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    code, r, err = doctor(project, "-e", "dev")
    assert code == 0, err
    assert checks(r, "dev")["terraform backend bucket"]["detail"] == f"s3://{BUCKET} (us-east-1) exists"
    assert checks(r, "dev")["state table"]["detail"] == f"DynamoDB table {TABLE} (us-east-1) exists"


def test_a_source_ami_that_does_not_resolve_exits_2_with_a_fix(tmp_path: Path, local_cloud: Any) -> None:
    need_tools("packer", "ansible-playbook", "terraform", "dpkg-deb")
    project = copy_project(tmp_path, "environments", "terraform")  # doctor reads the module's provider range
    edit(
        project / "environments/staging.yml",
        lambda d: d.setdefault("bake", {}).update(
            source_ami={"filter": {"name": "no-such-image-*", "owners": ["self"]}}
        ),
    )
    code, r, err = doctor(project, "-e", "dev", "-e", "staging")
    assert code == 2 and r["exit_code"] == 2
    assert r["environments"] == ["dev", "staging"] and r["failed"] == 1
    failed = checks(r, "staging")["source AMI"]
    assert failed["ok"] is False and "no-such-image-*" in failed["detail"]
    assert "bake.source_ami" in failed["fix"] and "staging.yml" in failed["fix"]
    assert "FAIL  staging: source AMI" in err
