"""gc's pure parts: which AMIs stay and why, where it looks, and its text."""

from __future__ import annotations

import datetime as dt

from baker import provenance
from baker.aws import AWS
from baker.cli.gc_cmd import render
from baker.config import load_project
from baker.gc import decide, places
from baker.images import GIB, Image

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
OLD = "2026-10-01T00:00:00.000Z"


def image(ami: str, created: str = OLD, region: str = "us-east-1", **tags: str) -> Image:
    return Image(id=ami, region=region, created=created, owner="123456789012", tags=tags)


def kept(found, evidence=None, days=14, **kw) -> dict[str, list[str]]:
    return decide(found, evidence or {}, now=NOW, older_than=dt.timedelta(days=days), **kw)


def test_nothing_holds_an_old_ami_so_it_goes():
    assert kept([image("ami-1")]) == {}


def test_evidence_youth_and_state_each_keep_an_ami_with_their_reason():
    found = [
        image("ami-1"),
        image("ami-2", created="2026-11-28T00:00:00.000Z"),
        Image(id="ami-3", region="us-east-1", created=OLD, state="pending"),
        image("ami-4", created="garbage"),
    ]
    out = kept(found, {"ami-1": ["pinned in prod by oncall at t: 'incident'"]})
    assert out["ami-1"] == ["pinned in prod by oncall at t: 'incident'"]
    assert out["ami-2"] == ["younger than 14 days (created 2026-11-28T00:00:00.000Z)"]
    assert out["ami-3"][0].startswith("pending, not available")
    assert "creation date is unknown" in out["ami-4"][0]
    assert kept(found[1:2], days=0) == {}


def test_outside_the_chosen_environments_stays():
    out = kept([image("ami-1")], deletable=lambda i: False)
    assert out == {"ami-1": ["outside the environments gc was asked to clean (-e)"]}


def test_a_kept_promoted_copy_keeps_its_source_down_the_chain():
    dev = image("ami-d", **{provenance.PROMOTED_TO: "staging:us-east-1:ami-s"})
    staging = image("ami-s", **{provenance.PROMOTED_FROM: "ami-d us-east-1 dev"})
    prod = image("ami-p", region="us-west-2", **{provenance.PROMOTED_FROM: "ami-s us-east-1 staging"})
    out = kept([dev, staging, prod], {"ami-p": ["live in prod"]})
    assert out["ami-s"] == ["the source of promoted copy ami-p (us-west-2), which is kept"]
    assert out["ami-d"] == ["the source of promoted copy ami-s (us-east-1), which is kept"]
    # a source whose copy goes may go too
    assert kept([dev, staging, prod]) == {}


def test_a_kept_ami_keeps_its_regional_copies_of_the_same_bake_only():
    bake = {provenance.RECIPE: "r", provenance.BUILT_AT: "t1"}
    home = image("ami-h", **bake)
    copy = image("ami-c", region="eu-west-1", **bake)
    rebaked = image("ami-r", region="eu-west-1", **{provenance.RECIPE: "r", provenance.BUILT_AT: "t2"})
    out = kept([home, copy, rebaked], {"ami-h": ["live in dev"]})
    assert out["ami-c"] == ["a regional copy of kept ami-h (us-east-1): the same bake"]
    assert "ami-r" not in out


def test_a_kept_app_layer_keeps_the_base_image_it_was_built_on():
    base = image("ami-b", **{provenance.LAYER: "base"})
    older_base = image("ami-o", **{provenance.LAYER: "base"})
    app = image("ami-a", **{provenance.LAYER: "app", provenance.BASE_AMI: "ami-b"})
    copy = image("ami-c", **{provenance.PROMOTED_FROM: "ami-a us-east-1 dev"})
    out = kept([base, older_base, app, copy], {"ami-c": ["live in staging"]})
    assert out["ami-a"] == ["the source of promoted copy ami-c (us-east-1), which is kept"]
    assert out["ami-b"] == ["the base image of kept ami-a (us-east-1), its app layer"]
    assert "ami-o" not in out, "a base no kept image was built on may go"
    assert kept([base, app]) == {}, "an app layer that goes lets its base go"


def test_places_are_each_account_and_region_once_with_their_environments(repo):
    project = load_project(repo)
    envs = [project.environment(n) for n in project.environment_names()]

    def aws_for(env):
        return AWS(region=env.settings.aws.region)

    found = places(envs, aws_for, only=["prod"])
    where = {(p.account_id, p.region): p for p in found}
    assert set(where) == {("123456789012", "us-east-1"), ("210987654321", "us-west-2")}
    assert where[("123456789012", "us-east-1")].envs == ["dev", "dev-layered", "staging"]
    assert [p.deletable for p in found] == [False, True]
    assert all(p.deletable for p in places(envs, aws_for))


def test_text_says_dry_run_what_goes_and_why_the_rest_stays():
    result = {
        "app": "hello-web",
        "dry_run": True,
        "places": [{"account_id": "1", "region": "r", "deletable": True}],
        "deleted": [
            {
                "ami_id": "ami-1",
                "account_id": "1",
                "region": "r",
                "version": "1",
                "created": OLD,
                "bytes": 8 * GIB,
            }
        ],
        "kept": [
            {"ami_id": "ami-2", "account_id": "1", "region": "r", "version": "2", "reasons": ["a", "b"]}
        ],
        "deprecated": [
            {"ami_id": "ami-3", "account_id": "1", "region": "r", "version": "3", "why": "unused: deprecated"}
        ],
        "snapshots_deleted": [],
        "bytes_freed": 8 * GIB,
    }
    text = render(result)
    assert text.splitlines()[0] == (
        "dry run: would deregister 1 AMI of hello-web and their snapshots (8.0 GiB to free), "
        "would deprecate 1, would disable 0, kept 1; in 1/r"
    )
    assert "ami-2" in text and "a; b" in text and "run with --apply" in text
    assert "DEPRECATED" in text and "unused: deprecated" in text


def test_a_fraction_of_a_day_is_said_as_such():
    out = kept([image("ami-1", created="2026-11-30T20:00:00.000Z")], days=0.5)
    assert out["ami-1"] == ["younger than 0.5 days (created 2026-11-30T20:00:00.000Z)"]
