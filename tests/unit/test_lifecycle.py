"""gc's stages (baker/lifecycle.py) with an injected clock: one stage per run, each after its age."""

from __future__ import annotations

import datetime as dt

from baker import provenance
from baker.images import Image
from baker.lifecycle import changes, launched_within, next_step

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def image(ami: str = "ami-1", state: str = "available", protection: str = "disabled", **tags: str) -> Image:
    return Image(id=ami, region="us-east-1", state=state, protection=protection, tags=tags)


def staged(stage: str, days_ago: float) -> dict[str, str]:
    return {provenance.GC_STAGE: provenance.stage_value(stage, NOW - days_ago * DAY)}


def step(img: Image, disable_after: float = 7, delete_after: float = 30) -> tuple[str | None, str]:
    found = next_step(img, now=NOW, disable_after=disable_after * DAY, delete_after=delete_after * DAY)
    return found.action, found.why


def test_an_unused_ami_is_deprecated_then_disabled_then_deregistered_each_after_its_age():
    assert step(image()) == ("deprecate", "unused: deprecated first")
    assert step(image(**staged("deprecated", 3)))[0] is None
    assert "disabled after 7 days" in step(image(**staged("deprecated", 3)))[1]
    assert step(image(**staged("deprecated", 8))) == (
        "disable",
        "deprecated 8 days ago (--disable-after 7 days)",
    )
    assert step(image("ami-1", "disabled", **staged("disabled", 29)))[0] is None
    assert step(image("ami-1", "disabled", **staged("disabled", 31)))[0] == "deregister"


def test_ages_of_zero_walk_an_image_through_one_stage_per_run():
    img = image()
    seen = []
    for _ in range(3):
        action, _why = step(img, disable_after=0, delete_after=0)
        seen.append(action)
        if action == "deprecate":
            img = image(**staged("deprecated", 0))
        elif action == "disable":
            img = image("ami-1", "disabled", **staged("disabled", 0))
    assert seen == ["deprecate", "disable", "deregister"]


def test_a_revoked_ami_skips_straight_to_disabled():
    revoked = {provenance.REVOKED: provenance.revoked_value(NOW, "sec", "CVE-1")}
    assert step(image(**revoked)) == ("disable", "revoked: straight to disabled")
    assert step(image(**revoked, **staged("deprecated", 0)))[0] == "disable"


def test_an_image_disabled_by_hand_gets_its_stage_recorded_not_deleted():
    assert step(image("ami-1", "disabled"))[0] == "disable"


def test_launched_recently_is_a_reason_to_keep():
    recent = Image(id="ami-1", region="r", last_launched="2026-11-28T00:00:00.000Z")
    assert launched_within(recent, now=NOW, days=14) == (
        "launched within 14 days (last launch 2026-11-28T00:00:00.000Z)"
    )
    assert launched_within(recent, now=NOW, days=2) is None
    assert launched_within(Image(id="ami-2", region="r"), now=NOW, days=14) is None


def test_protection_goes_to_the_live_previous_and_pinned_and_is_lifted_from_the_rest():
    live, old, kept_again = (
        image("ami-live"),
        image("ami-old", protection="enabled"),
        image("ami-back", "disabled", **staged("disabled", 1)),
    )
    kept = {"ami-live": ["live in prod"], "ami-back": ["pinned in dev"]}
    out = changes([live, old, kept_again], [], kept, {"ami-live", "ami-back"}, "123456789012")
    assert [(r["ami_id"], r["why"]) for r in out["protected"]] == [
        ("ami-live", "live in prod"),
        ("ami-back", "pinned in dev"),
    ]
    assert [r["ami_id"] for r in out["unprotected"]] == ["ami-old"]
    assert [r["ami_id"] for r in out["restored"]] == ["ami-back"], "kept again: enabled, no longer staged"
