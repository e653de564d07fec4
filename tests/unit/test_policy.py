"""The policy gate (``policy.Gate``): each rule refuses with exit 6, names itself, the file and key
that set it and what to do; the soak is measured on an injected clock. The pin is read through a
stand-in for the ledger (``PinOnly``): the gate asks it nothing else."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from baker import provenance
from baker.config import Environment, load_project
from baker.errors import Refused
from baker.images import Image
from baker.ledger import Release
from baker.policy import Change, Gate

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


class PinOnly:
    """A stand-in for the ledger of one environment: its pin (None: not pinned) and its table's name."""

    table = SimpleNamespace(name="baker-state")

    def __init__(self, pin: dict[str, Any] | None = None) -> None:
        self._pin = pin

    def pin(self) -> dict[str, Any] | None:
        return self._pin


def environment(tmp_path: Path, name: str, **settings: Any) -> Environment:
    """This repository's environments, with ``settings`` added to environments/<name>.yml."""
    shutil.copy(REPO / "baker.yml", tmp_path / "baker.yml")
    shutil.copytree(REPO / "environments", tmp_path / "environments")
    path = tmp_path / "environments" / f"{name}.yml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **settings}))
    return load_project(tmp_path).environment(name)


def gate(env: Environment, pin: dict[str, Any] | None = None, now: dt.datetime = NOW) -> Gate:
    return Gate(env, PinOnly(pin), clock=lambda: now)  # type: ignore[arg-type]  # the pin is all it reads


def image(verified: bool = False) -> Image:
    tags = {provenance.VERIFIED: provenance.verified_value(NOW, "abc123")} if verified else {}
    return Image(id="ami-0123456789abcdef0", region="us-east-1", tags=tags)


def released(healthy_at: dt.datetime) -> Release:
    return Release(
        id="r1",
        kind="deploy",
        app="hello-web",
        env="staging",
        ami_id="ami-0123456789abcdef0",
        at=provenance.iso(healthy_at),
        by="ci",
        outcome="healthy",
        healthy_at=provenance.iso(healthy_at),
    )


def refused(g: Gate, change: Change) -> Refused:
    with pytest.raises(Refused) as info:
        g.check(change)
    assert info.value.exit_code == 6
    assert info.value.details["outcome"] == "refused"
    assert info.value.message.startswith(f"refused by policy [{info.value.details['rule']}]: ")
    return info.value


def test_a_pinned_environment_refuses_every_verb_but_pin_and_says_who_and_how_to_unpin(tmp_path: Path):
    pin = {
        "ami_id": "ami-0aaaaaaaaaaaaaaaa",
        "by": "oncall",
        "at": "2026-03-01T11:00:00Z",
        "reason": "incident 42",
    }
    g = gate(environment(tmp_path, "dev"), pin)
    for verb in ("deploy", "release", "promote", "rollback"):
        error = refused(g, Change(verb, image(), source_env="dev"))
        assert error.details["rule"] == "pinned" and error.details["pinned"] == pin
        assert "oncall" in error.message and "'incident 42'" in error.message
        assert "'baker unpin -e dev'" in error.message
        assert "(the pin of dev in the state table baker-state)" in error.message
    g.check(Change("pin", image()))  # a pin may replace a pin


def test_a_protected_environment_takes_no_direct_deploy_or_release(tmp_path: Path):
    prod = environment(tmp_path, "prod")
    for verb in ("deploy", "release"):
        error = refused(gate(prod), Change(verb, image(verified=True)))
        assert (error.details["rule"], error.details["key"]) == ("protected", "protected")
        assert error.details["file"] == str(tmp_path / "environments" / "prod.yml")
        assert f"({tmp_path}/environments/prod.yml: protected)" in error.message
        assert "'baker promote --from staging --to prod'" in error.message
    gate(prod).check(Change("rollback", image(verified=True)))
    gate(prod).check(Change("promote", image(verified=True), source_env="staging"))


def test_promote_from_names_the_only_source_allowed(tmp_path: Path):
    error = refused(gate(environment(tmp_path, "staging")), Change("promote", image(), source_env="prod"))
    assert (error.details["rule"], error.details["key"]) == ("promote_from", "promote_from")
    assert error.details["file"] == str(tmp_path / "environments" / "staging.yml")
    assert "staging takes promotions only from dev, not prod" in error.message
    assert "'baker promote --from dev --to staging'" in error.message


def test_require_verified_refuses_an_unverified_ami_and_says_how_to_verify(tmp_path: Path):
    g = gate(environment(tmp_path, "dev", require_verified=True))
    error = refused(g, Change("deploy", image(verified=False)))
    assert (error.details["rule"], error.details["key"]) == ("require_verified", "require_verified")
    assert error.details["file"] == str(tmp_path / "environments" / "dev.yml")
    assert error.details["ami_id"] == "ami-0123456789abcdef0"
    assert "'baker verify -e dev --ami ami-0123456789abcdef0'" in error.message
    g.check(Change("deploy", image(verified=True)))


def test_a_rule_set_in_defaults_names_defaults_yml(tmp_path: Path):
    env = environment(tmp_path, "dev")
    defaults = tmp_path / "environments" / "defaults.yml"
    defaults.write_text(defaults.read_text().replace("require_verified: false", "require_verified: true"))
    error = refused(gate(load_project(tmp_path).environment("dev")), Change("deploy", image()))
    assert error.details["file"] == str(defaults)
    assert f"({defaults}: require_verified)" in error.message
    assert env.settings.require_verified is False


def test_min_soak_counts_from_healthy_in_the_source_on_the_gates_clock(tmp_path: Path):
    env = environment(tmp_path, "staging", promotion={"min_soak": "1h"})
    source = released(healthy_at=NOW - dt.timedelta(minutes=20))
    change = Change("promote", image(), source_env="dev", source_release=source)
    error = refused(gate(env, now=NOW), change)
    assert (error.details["rule"], error.details["key"]) == ("min_soak", "promotion.min_soak")
    assert error.details["file"] == str(tmp_path / "environments" / "staging.yml")
    assert (error.details["soaked_seconds"], error.details["min_soak_seconds"]) == (1200, 3600)
    assert "has been healthy in dev for 0:20:00; staging needs 1:00:00 (promotion.min_soak)" in error.message
    assert "promote it later" in error.message
    gate(env, now=NOW + dt.timedelta(minutes=40)).check(change)  # the same AMI, an hour after


def test_min_soak_refuses_an_ami_never_healthy_in_the_source(tmp_path: Path):
    env = environment(tmp_path, "staging", promotion={"min_soak": 60})
    error = refused(gate(env), Change("promote", image(), source_env="dev", source_release=None))
    assert error.details["rule"] == "min_soak" and error.details["soaked_seconds"] == 0


def test_an_environment_without_rules_allows_every_verb(tmp_path: Path):
    g = gate(environment(tmp_path, "dev"))
    for verb in ("deploy", "release", "promote", "pin", "rollback"):
        g.check(Change(verb, image(), source_env="dev"))
    with pytest.raises(ValueError, match="unknown verb"):
        g.check(Change("retire", image()))
