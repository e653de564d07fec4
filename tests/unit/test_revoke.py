"""revoke's pure parts: which images are a revoked AMI's family, and the gate's refusal."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from baker import provenance
from baker.config import load_project
from baker.errors import Refused
from baker.images import Image
from baker.policy import Change, Gate
from baker.revoke import family
from baker.status import fail_on_revoked
from tests.conftest import REPO

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
BAKE = {provenance.RECIPE: "r1", provenance.BUILT_AT: "2026-11-01T00:00:00Z"}
FROM = provenance.PROMOTED_FROM


def image(ami: str, region: str = "us-east-1", owner: str = "111", **tags: str) -> Image:
    return Image(id=ami, region=region, owner=owner, tags=tags)


def test_the_family_is_regional_promoted_and_layered_copies_not_the_sources_or_strangers():
    root = image("ami-root", **BAKE, **{provenance.PROMOTED_TO: "staging:us-west-2:ami-west"})
    found = [
        image("ami-stranger", **{provenance.RECIPE: "r2", provenance.BUILT_AT: "x"}),
        image("ami-source"),
        root,
        image("ami-east2", "us-east-2", **BAKE),  # the bake's regional copy
        image("ami-west", "us-west-2", **{FROM: "ami-other us-east-1 dev"}),  # named by promoted-to
        image("ami-prod", "us-west-2", owner="222", **{FROM: "ami-root us-east-1 staging"}),
        image("ami-prod-eu", "eu-west-1", owner="222", **{FROM: "ami-prod us-west-2 prod"}),
        image("ami-app", **{provenance.BASE_AMI: "ami-east2"}),  # an app image on the revoked base
    ]
    members = [i.id for i in family("ami-root", found)]
    assert members[0] == "ami-root"
    assert set(members) == {"ami-root", "ami-east2", "ami-west", "ami-prod", "ami-prod-eu", "ami-app"}


class NoPin:
    """A ledger stand-in with no pin: the gate's revoked rule is decided before the pin is read."""

    table = type("T", (), {"name": "t"})()

    def pin(self) -> None:
        return None


@pytest.mark.parametrize("verb", ["deploy", "release", "promote", "pin", "rollback"])
def test_every_verb_that_changes_what_runs_refuses_a_revoked_ami_naming_who_and_why(verb: str):
    project = load_project(REPO)
    gate = Gate(project.environment("dev"), NoPin())  # type: ignore[arg-type]
    value = provenance.revoked_value(NOW, "sec@host", "CVE-2026-1", root="ami-root")
    copy = Image(id="ami-copy", region="us-east-1", tags={provenance.REVOKED: value})
    with pytest.raises(Refused) as refused:
        gate.check(Change(verb=verb, image=copy, source_env="dev"))
    details: dict[str, Any] = refused.value.details
    assert details["rule"] == "revoked" and refused.value.exit_code == 6
    message = refused.value.message
    assert "ami-copy (a copy or child of ami-root) was revoked by sec@host" in message
    assert "'CVE-2026-1'" in message and "baker unrevoke --ami ami-root" in message


def test_status_fail_on_revoked_names_every_environment_running_one():
    revoked = {"ami_id": "ami-1", "by": "sec", "at": "t", "reason": "CVE", "root": ""}
    result = {
        "environments": [
            {"env": "dev", "revoked": [revoked]},
            {"env": "staging", "revoked": []},
            {"env": "prod", "revoked": [{**revoked, "ami_id": "ami-2"}]},
        ]
    }
    with pytest.raises(Refused) as refused:
        fail_on_revoked(result)
    assert refused.value.details["revoked_envs"] == ["dev", "prod"]
    assert "dev runs ami-1" in refused.value.message and "prod runs ami-2" in refused.value.message
    fail_on_revoked({"environments": [{"env": "dev", "revoked": []}]})  # nothing revoked runs: no alarm
