"""baker history against the local cloud's ledger, through the CLI as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baker.cli import main
from tests.integration import operator_cloud as oc

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return oc.project(tmp_path_factory.mktemp("history-project"), app="ops-history")


def history(root: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, Any]:
    code = main(["--project", str(root), "--local", "--output", "json", "history", *args])
    return code, json.loads(capsys.readouterr().out)


def test_history_lists_every_step_newest_first(local_cloud: Any, root: Path, capsys: pytest.CaptureFixture):
    book = oc.ledger(local_cloud.aws(), "ops-dev", app="ops-history")
    v1 = "ami-0000000000000a001"
    v2 = "ami-0000000000000a002"
    oc.record(book, "deploy", v1, version="1.0.0", runtime={"A": "1", "B": "2"}, by="ci:1")
    oc.record(book, "deploy", v2, version="2.0.0", previous_ami_id=v1, by="ci:2")
    oc.record(book, "pin", v1, version="1.0.0", previous_ami_id=v2, pin_reason="incident 7", by="oncall")
    oc.record(book, "unpin", v1, outcome="done", pin_reason="incident 7", by="oncall")
    oc.record(book, "rollback", v1, outcome="interrupted", reason="interrupted; live: 2 on v1", by="oncall")

    code, out = history(root, capsys, "-e", "ops-dev")
    assert code == 0
    rows = out["releases"]
    assert [r["kind"] for r in rows] == ["rollback", "unpin", "pin", "deploy", "deploy"]
    assert [r["outcome"] for r in rows] == ["interrupted", "done", "healthy", "healthy", "healthy"]
    for row in rows:
        assert {"kind", "ami_id", "version", "outcome", "at", "by", "previous_ami_id"} <= set(row)
    assert rows[2]["pin_reason"] == "incident 7" and rows[2]["previous_ami_id"] == v2
    assert rows[3]["previous_ami_id"] == v1 and rows[3]["by"] == "ci:2"
    assert rows[4]["runtime_keys"] == 2 and "runtime" not in rows[4], "values stay in the ledger"
    assert rows[0]["at"] > rows[1]["at"] > rows[4]["at"]

    code, out = history(root, capsys, "-e", "ops-dev", "--limit", "2")
    assert code == 0 and [r["kind"] for r in out["releases"]] == ["rollback", "unpin"]

    assert main(["--project", str(root), "--local", "history", "-e", "ops-dev"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "ops-dev: 5 releases, newest first"
    assert "KIND" in text and "incident 7" in text and "interrupted" in text


def test_history_of_a_promotion_names_its_source(local_cloud: Any, root: Path, capsys: pytest.CaptureFixture):
    book = oc.ledger(local_cloud.aws("us-west-2", "210987654321"), "ops-prod", app="ops-history")
    src = {"env": "ops-stage", "ami_id": "ami-0000000000000b001", "region": "us-east-1"}
    oc.record(book, "promote", "ami-0000000000000b002", version="3.0.0", promoted_from=src)
    code, out = history(root, capsys, "-e", "ops-prod")
    assert code == 0 and out["releases"][0]["promoted_from"] == src
    assert main(["--project", str(root), "--local", "history", "-e", "ops-prod"]) == 0
    assert "from ops-stage ami-0000000000000b001" in capsys.readouterr().out


def test_history_of_an_environment_never_deployed_is_empty(
    local_cloud: Any, root: Path, capsys: pytest.CaptureFixture
):
    code, out = history(root, capsys, "-e", "ops-new")
    assert code == 0 and out == {"env": "ops-new", "releases": []}


def test_history_of_an_unknown_environment_is_usage_error(root: Path, capsys: pytest.CaptureFixture):
    code, out = history(root, capsys, "-e", "nosuch")
    assert code == 2 and "nosuch" in out["error"]
