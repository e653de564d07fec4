"""status's pure parts: the drift decision and the 3 a.m. table."""

from __future__ import annotations

from baker.cli.status_cmd import render
from baker.fleet import Fleet
from baker.ledger import Release
from baker.status import drift

A, B = "ami-0000000a", "ami-0000000b"


def live(ami: str = A, version: str = "3", template: str = "lt-1") -> Release:
    return Release(
        id="r",
        kind="deploy",
        app="a",
        env="dev",
        ami_id=ami,
        at="t",
        by="me",
        outcome="healthy",
        asg_name="g",
        launch_template_id=template,
        launch_template_version=version,
    )


def fleet(**fields) -> Fleet:
    base = {
        "asg_name": "g",
        "found": True,
        "launch_template_id": "lt-1",
        "group_version": "3",
        "group_ami_id": A,
        "default_version": "3",
        "default_ami_id": A,
        "desired": 2,
        "instances": {A: 2},
    }
    return Fleet(**{**base, **fields})


def test_no_drift_when_aws_runs_the_ledgers_live_ami():
    assert drift(live(), fleet()) == []


def test_a_default_version_changed_by_hand_is_drift():
    (reason,) = drift(live(), fleet(default_version="4", default_ami_id=B))
    assert "default version 4" in reason and B in reason


def test_the_group_on_another_version_of_another_ami_is_drift():
    reasons = drift(live(), fleet(group_version="4", group_ami_id=B, default_version="4", default_ami_id=B))
    assert len(reasons) == 2 and "version 4 runs " + B in reasons[0]


def test_the_same_ami_on_another_version_is_drift_of_the_runtime():
    (reason,) = drift(live(), fleet(group_version="5", default_version="5"))
    assert "same AMI" in reason


def test_instances_on_another_ami_are_drift_an_interrupted_refresh():
    (reason,) = drift(live(), fleet(instances={A: 1, B: 1}))
    assert f"{B} (1)" in reason


def test_a_group_that_is_gone_or_empty_is_drift():
    assert drift(live(), Fleet(asg_name="g")) == ["Auto Scaling group g not found"]
    assert drift(live(), fleet(instances={})) == ["no instance in service (desired 2)"]


def test_never_deployed_is_not_drift_unless_something_runs():
    assert drift(None, None) == []
    assert drift(None, Fleet(asg_name="g")) == []
    assert drift(None, fleet()) == [f"no healthy release recorded, but the fleet runs {A}"]


def env_row(**fields) -> dict:
    base = {
        "env": "dev",
        "deployed": True,
        "ami_id": A,
        "version": "1.0.0",
        "git_sha": "0123456789abcdef0123",
        "deployed_at": "2026-12-01T03:04:05.123Z",
        "by": "ci:7",
        "pinned": None,
        "drift": False,
        "drift_reasons": [],
        "fleet": {
            "asg_name": "g",
            "found": True,
            "launch_template_id": "lt-1",
            "launch_template_version": "3",
            "launch_template_ami_id": A,
            "default_version": "3",
            "default_version_ami_id": A,
            "desired": 2,
            "in_service": {A: 2},
        },
        "lock": None,
        "unfinished": None,
        "error": None,
    }
    return {**base, **fields}


def test_the_table_has_one_line_per_environment_and_notes_only_when_there_is_news():
    text = render({"environments": [env_row(), env_row(env="prod", deployed=False, ami_id=None, fleet=None)]})
    lines = text.splitlines()
    assert lines[0].split() == [
        "ENV",
        "AMI",
        "VERSION",
        "GIT",
        "SHA",
        "DEPLOYED",
        "BY",
        "FLEET",
        "PIN",
        "DRIFT",
    ]
    assert lines[1].split()[:4] == ["dev", A, "1.0.0", "0123456789ab"]
    assert "2026-12-01 03:04:05Z" in lines[1] and "2/2 in service" in lines[1]
    assert "never deployed" in lines[2]
    assert len(lines) == 3


def test_pin_drift_lock_and_unfinished_release_each_get_a_line():
    row = env_row(
        pinned={"ami_id": A, "reason": "incident 7", "by": "oncall", "at": "t"},
        drift=True,
        drift_reasons=["the launch template's default version 4 runs " + B],
        lock={"owner": "ci:8", "since": "t", "purpose": "deploy " + B},
        unfinished={
            "id": "r9",
            "kind": "deploy",
            "ami_id": B,
            "by": "ci:8",
            "outcome": "in_progress",
            "reason": None,
        },
    )
    text = render({"environments": [row]})
    assert f"PINNED {A}" in text.splitlines()[1] and "DRIFT" in text.splitlines()[1]
    assert "dev: pinned to " + A + " by oncall at t: 'incident 7' (lift with 'baker unpin -e dev')" in text
    assert "dev: DRIFT: the launch template's default version 4 runs " + B in text
    assert "dev: deploy lock held by ci:8" in text
    assert f"dev: newest release r9 (deploy of {B} by ci:8) is in_progress" in text


def test_an_unreadable_environment_says_why():
    text = render({"environments": [{"env": "prod", "error": "AWS profile 'x' not found"}]})
    assert "UNREADABLE" in text and "prod: could not be read: AWS profile 'x' not found" in text


def test_a_layered_image_names_the_base_it_runs_on():
    assert f"{A} is an app layer on the base image {B}" in render({"environments": [env_row(base_ami_id=B)]})
    assert "base image" not in render({"environments": [env_row(base_ami_id=None)]})
