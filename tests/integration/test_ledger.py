"""The release ledger, pins and credentials against the local cloud's DynamoDB and STS."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from baker.aws import AWS
from baker.ledger import Ledger

pytestmark = pytest.mark.integration


def test_the_ledger_keeps_every_release_in_order(local_cloud: Any):
    """150 deploys (intent, then outcome: 300 writes) all read back, newest first; SSM's
    parameter history would have kept the newest 100 versions, 50 releases."""
    ledger = Ledger(local_cloud.aws(), table="baker-state", app="ledger-test", env="many")
    written = []
    for n in range(150):
        release = ledger.new("deploy", f"ami-{n:017x}", version=f"1.0.{n}", runtime={"N": str(n)})
        ledger.write(release)
        release.outcome = "healthy" if n % 3 else "failed"
        ledger.write(release)
        written.append(release.id)
    back = ledger.releases()
    assert [r.id for r in back] == list(reversed(written))
    assert back[0].version == "1.0.149" and back[-1].version == "1.0.0"
    assert back[0].runtime == {"N": "149"}
    assert ledger.live().ami_id == f"ami-{149:017x}"
    assert ledger.last_good(exclude_ami=f"ami-{149:017x}").ami_id == f"ami-{148:017x}"
    assert ledger.releases(limit=5) == back[:5]


def test_the_rollback_target_passes_over_revoked_amis(local_cloud: Any):
    """What the automatic rollback (and ``baker rollback``) goes back to skips revoked releases;
    when all earlier good ones are revoked there is none, and the unfiltered read says which."""
    ledger = Ledger(local_cloud.aws(), table="baker-state", app="ledger-test", env="revoked")
    made = []
    for ami, outcome in (("ami-00000000000000001", "healthy"), ("ami-00000000000000002", "healthy")):
        release = ledger.new("deploy", ami)
        release.outcome = outcome
        made.append(ledger.write(release))
    failed = ledger.new("deploy", "ami-00000000000000003", outcome="failed")
    ledger.write(failed)
    assert ledger.last_good_besides(failed).ami_id == "ami-00000000000000002"
    record = {"at": "t", "by": "sec", "reason": "CVE", "root": "ami-00000000000000002"}
    ledger.set_revoked(["ami-00000000000000002"], record)
    assert ledger.revoked() == {"ami-00000000000000002": record}
    assert ledger.last_good_besides(failed).ami_id == "ami-00000000000000001"
    assert ledger.last_good(exclude_ami="ami-00000000000000003").ami_id == "ami-00000000000000001"
    ledger.set_revoked(["ami-00000000000000001"], record)
    assert ledger.last_good_besides(failed) is None
    assert ledger.last_good_besides(failed, skip_revoked=False).ami_id == "ami-00000000000000002"
    ledger.clear_revoked(["ami-00000000000000001", "ami-00000000000000002"])
    assert ledger.revoked() == {} and ledger.last_good_besides(failed).ami_id == "ami-00000000000000002"


def test_a_pin_is_set_read_and_cleared(local_cloud: Any):
    ledger = Ledger(local_cloud.aws(), table="baker-state", app="ledger-test", env="pinned")
    assert ledger.pin() is None
    ledger.set_pin("ami-0123456789abcdef0", reason="incident 7", by="oncall")
    assert ledger.pin()["reason"] == "incident 7"
    assert ledger.clear_pin()["ami_id"] == "ami-0123456789abcdef0"
    assert ledger.pin() is None and ledger.clear_pin() is None


def test_an_assumed_role_renews_itself_and_reaches_children(local_cloud: Any, monkeypatch):
    aws = AWS(
        region="us-east-1",
        endpoint_url=local_cloud.endpoint,
        credentials={"aws_access_key_id": "123456789012", "aws_secret_access_key": "baker-local"},
        role_arn="arn:aws:iam::123456789012:role/baker-deployer",
    )
    creds = aws.session().get_credentials()
    first = creds.get_frozen_credentials().access_key
    assert aws.client("sts").get_caller_identity()["Arn"].endswith("assumed-role/baker-deployer/baker")
    # an hour and a half later the role session has expired: botocore assumes the role again
    # (the clock botocore was given moves on until the new session arrives; the emulator's stays)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, minutes=30)
    expired = creds._expiry_time
    monkeypatch.setattr(
        creds, "_time_fetcher", lambda: later if creds._expiry_time == expired else dt.datetime.now(dt.UTC)
    )
    second = creds.get_frozen_credentials().access_key
    assert second != first
    # a child (packer, terraform) gets the current credentials through credential_process, and
    # no key in its environment
    with aws.child_env() as env:
        assert env["AWS_PROFILE"] == "baker" and env["AWS_ACCESS_KEY_ID"] == ""
        config = Path(env["AWS_CONFIG_FILE"]).read_text()
        assert "credential_process" in config and "baker-local" not in config and second not in config
        command = config.split("credential_process = ", 1)[1].splitlines()[0].split()
        out = subprocess.run(
            command, capture_output=True, text=True, check=True, env={**env, "PATH": "/usr/bin"}
        )
        answer = json.loads(out.stdout)
        assert answer["Version"] == 1 and answer["AccessKeyId"] == second
        path = env["AWS_CONFIG_FILE"]
    assert not Path(path).exists(), "the generated profile goes with the child"
    assert sys.executable in command[0]
