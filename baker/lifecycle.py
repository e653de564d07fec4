"""The stages gc walks an unused AMI through, like EC2 Image Builder's lifecycle rules.

An AMI nothing keeps is not deregistered at once:

    unused ──gc──▶ deprecated ──(--disable-after DAYS)──▶ disabled ──(--delete-after DAYS)──▶ deregistered

- **deprecated** (EnableImageDeprecation, now): still launches; DescribeImages of other accounts
  hides it; a warning to whoever still uses it;
- **disabled** (DisableImage): no new launches and private, but ``EnableImage`` brings it back;
- **deregistered** with its snapshots.

One stage per run: each stage is recorded on the AMI (``baker:gc-stage`` = "<stage> <UTC time>"),
and the next stage waits until its age has passed since then (both ages may be 0, so that one run
per stage walks an image through). A revoked AMI skips straight to disabled. An AMI that something
keeps again (a rollback to it, a pin) is brought back: enabled, its deprecation cancelled.
The live, previous-good and pinned AMIs of every environment carry deregistration protection,
lifted when they stop being any of those.

gc (baker/gc.py) reads the images and decides what is kept; the stage of the rest is decided here
(``next_step``, pure) and carried out by ``carry_out``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from baker import images, provenance
from baker.aws import Client
from baker.images import Image

log = logging.getLogger("baker")

STAGES = ("deprecated", "disabled")
#: what one gc run reports besides its deletions, per image
CHANGES = ("deprecated", "disabled", "waiting", "restored", "protected", "unprotected")


@dataclass(frozen=True)
class Step:
    """What gc does to one unused image in this run (``action`` None: nothing yet, ``why`` says)."""

    image: Image
    #: deprecate, disable, deregister, or None
    action: str | None
    why: str


def stage_of(image: Image) -> tuple[str, dt.datetime] | None:
    """Where gc has taken the image so far: its recorded stage and since when."""
    return provenance.parse_stage(image.tags.get(provenance.GC_STAGE))


def _days(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 86400:g} days"


def next_step(
    image: Image, *, now: dt.datetime, disable_after: dt.timedelta, delete_after: dt.timedelta
) -> Step:
    """Pure: the one stage an unused image takes in this run."""
    stage = stage_of(image)
    revoked = image.revoked is not None
    if image.state == "disabled" and (stage is None or stage[0] != "disabled"):
        return Step(image, "disable", "disabled outside gc: its stage is recorded from now")
    if stage is None or stage[0] not in STAGES:
        if revoked:
            return Step(image, "disable", "revoked: straight to disabled")
        return Step(image, "deprecate", "unused: deprecated first")
    name, since = stage
    waited = now - since
    if name == "deprecated":
        if revoked or waited >= disable_after:
            why = f"deprecated {_days(waited)} ago (--disable-after {_days(disable_after)})"
            return Step(image, "disable", "revoked" if revoked else why)
        wait = f"deprecated since {provenance.iso(since)}; disabled after {_days(disable_after)}"
        return Step(image, None, wait)
    if waited >= delete_after:
        why = f"disabled {_days(waited)} ago (--delete-after {_days(delete_after)})"
        return Step(image, "deregister", why)
    return Step(image, None, f"disabled since {provenance.iso(since)}; deleted after {_days(delete_after)}")


def restore_needed(image: Image) -> bool:
    """A kept image that gc had started to retire (its stage tag says so): bring it back. A
    deprecation or a disable gc did not make is left alone."""
    return provenance.GC_STAGE in image.tags


def launched_within(image: Image, *, now: dt.datetime, days: float) -> str | None:
    """The keep reason when the image was launched within ``days`` (LastLaunchedTime), else None."""
    launched = provenance.parse_iso(image.last_launched)
    if launched is None or days <= 0 or now - launched >= dt.timedelta(days=days):
        return None
    return f"launched within {days:g} days (last launch {image.last_launched})"


def changes(
    found: list[Image],
    staged: list[Step],
    kept: dict[str, list[str]],
    protect: set[str],
    account_id: str,
) -> dict[str, list[dict[str, Any]]]:
    """Pure: what one gc run changes in one place besides deletions, each image with why: its
    stage (``staged``), kept images gc had begun to retire (restored), and deregistration
    protection set on the live, previous and pinned AMIs (``protect``) and lifted from the rest."""
    out: dict[str, list[dict[str, Any]]] = {what: [] for what in CHANGES}

    def row(image: Image, why: str) -> dict[str, Any]:
        where = {"account_id": account_id, "region": image.region}
        return {"ami_id": image.id, **where, "version": image.version, "why": why}

    for st in staged:
        what = {"deprecate": "deprecated", "disable": "disabled"}.get(st.action or "", "waiting")
        out[what].append(row(st.image, st.why))
    for image in found:
        if image.id in kept and restore_needed(image):
            out["restored"].append(row(image, kept[image.id][0]))
        should = image.id in protect
        if image.protected != should:
            why = kept[image.id][0] if should and image.id in kept else "no longer live, previous or pinned"
            out["protected" if should else "unprotected"].append(row(image, why))
    return out


def carry_out(ec2: Client, step: Step, *, now: dt.datetime) -> list[str]:
    """Take the image to its next stage (``record`` then says so on it); returns the snapshots
    deleted (a deregistration)."""
    image = step.image
    if step.action == "deregister":
        return images.deregister(ec2, image)
    if step.action == "deprecate":
        ec2.enable_image_deprecation(ImageId=image.id, DeprecateAt=provenance.iso(now))
    elif step.action == "disable" and image.state != "disabled":
        ec2.disable_image(ImageId=image.id)
    log.info("gc: %s %s (%s)", step.action, image.id, step.why)
    return []


def record(ec2: Client, ami_ids: list[str], stage: str, now: dt.datetime) -> None:
    """``baker:gc-stage`` on the images that reached ``stage`` in this run (200 per call)."""
    tag = {"Key": provenance.GC_STAGE, "Value": provenance.stage_value(stage, now)}
    for start in range(0, len(ami_ids), images.BATCH):
        ec2.create_tags(Resources=ami_ids[start : start + images.BATCH], Tags=[tag])


def restore(ec2: Client, image: Image) -> None:
    """A kept image gc had begun to retire: enabled again, its deprecation and stage removed."""
    if image.state == "disabled":
        ec2.enable_image(ImageId=image.id)
    if image.deprecation_time:
        ec2.disable_image_deprecation(ImageId=image.id)
    ec2.delete_tags(Resources=[image.id], Tags=[{"Key": provenance.GC_STAGE}])
    log.info("gc: %s is kept again: enabled, no longer deprecated", image.id)


def set_protection(ec2: Client, image: Image, on: bool) -> None:
    if on:
        ec2.enable_image_deregistration_protection(ImageId=image.id)
    else:
        ec2.disable_image_deregistration_protection(ImageId=image.id)
