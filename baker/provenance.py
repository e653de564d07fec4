"""Provenance: the ``baker:*`` tags every AMI and its snapshots carry, in one place.

Everything that writes or reads them (bake, verify, promote, gc, status) takes the keys from here,
so a tag is spelled once. Tags are strings of at most 256 characters (EC2's limit).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from baker import __version__

APP = "baker:app"
VERSION = "baker:version"
GIT_SHA = "baker:git-sha"
DEB_SHA256 = "baker:deb-sha256"
RECIPE = "baker:recipe"
SOURCE_AMI = "baker:source-ami"
BAKED_FOR = "baker:baked-for"
BUILT_AT = "baker:built-at"
BUILDER = "baker:builder"
CI_URL = "baker:ci-url"
#: set by verify when every smoke check passed: "<UTC time> checks=<digest>"
VERIFIED = "baker:verified"
#: on a promoted copy: "<source AMI> <source region> from <env>"; on its source: the environments it went to
PROMOTED_FROM = "baker:promoted-from"
PROMOTED_TO = "baker:promoted-to"
#: on an app layer: the base AMI it was built on and that base's recipe (DESIGN.md: layered images)
BASE_AMI = "baker:base-ami"
BASE_RECIPE = "baker:base-recipe"
#: on an image of a layered bake: which layer it is (base or app)
LAYER = "baker:layer"
#: tags the build instance so a failed bake's leftovers can be swept
BUILD_ID = "baker:build-id"
#: set by gc --apply on the snapshots of an AMI it is about to deregister: an interrupted run's
#: next run finds and deletes them although their AMI is gone
GC_PENDING = "baker:gc-pending"
#: set by ``baker revoke`` on the AMI, its snapshots and every copy and child: "<UTC time> by <who>
#: [as a copy of <AMI>]: <reason>"; no verb that changes what runs takes a revoked AMI
REVOKED = "baker:revoked"
#: set by gc on an unused AMI at each stage it walks it through: "<stage> <UTC time>"
GC_STAGE = "baker:gc-stage"

#: the provenance tags of DESIGN.md that every baked AMI has (baker:ci-url only when CI says it)
BAKED = (APP, VERSION, GIT_SHA, DEB_SHA256, RECIPE, SOURCE_AMI, BAKED_FOR, BUILT_AT, BUILDER)
#: every tag baker may set on an AMI: the budget AWS's 50-tag limit must leave free
ALL = (*BAKED, CI_URL, VERIFIED, PROMOTED_FROM, PROMOTED_TO, REVOKED, GC_STAGE, BASE_AMI, BASE_RECIPE, LAYER)
MAX_VALUE = 256


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def ci_url(environ: Mapping[str, str] | None = None) -> str | None:
    """Where the CI job that runs this bake can be seen, when a CI system says so."""
    e = os.environ if environ is None else environ
    if e.get("BAKER_CI_URL"):
        return e["BAKER_CI_URL"]
    if e.get("GITHUB_ACTIONS") == "true" and e.get("GITHUB_RUN_ID") and e.get("GITHUB_REPOSITORY"):
        server = e.get("GITHUB_SERVER_URL", "https://github.com")
        return f"{server}/{e['GITHUB_REPOSITORY']}/actions/runs/{e['GITHUB_RUN_ID']}"
    for key in ("CI_JOB_URL", "BUILD_URL", "CIRCLE_BUILD_URL"):  # GitLab, Jenkins, CircleCI
        if e.get(key):
            return e[key]
    return None


def builder(packer_version: tuple[int, int, int], ansible: str | None = None) -> str:
    """`baker X; packer Y; ansible-core Z`. Packer tags the AMI before Ansible's version is known
    (the playbook reports it), so baker completes the tag after the build."""
    tag = f"baker {__version__}; packer {'.'.join(map(str, packer_version))}"
    return f"{tag}; ansible-core {ansible}" if ansible else tag


def baked(
    *,
    app: str,
    version: str,
    git_sha: str | None,
    deb_sha256: str,
    recipe: str,
    source_ami: str,
    baked_for: str,
    built_at: str,
    builder: str,
    ci: str | None = None,
) -> dict[str, str]:
    """The tags of a freshly baked AMI."""
    tags = {
        APP: app,
        VERSION: version,
        GIT_SHA: git_sha or "none",
        DEB_SHA256: deb_sha256,
        RECIPE: recipe,
        SOURCE_AMI: source_ami,
        BAKED_FOR: baked_for,
        BUILT_AT: built_at,
        BUILDER: builder,
    }
    if ci:
        tags[CI_URL] = ci[:MAX_VALUE]
    return tags


def checks_digest(checks: Iterable[Mapping[str, Any]]) -> str:
    """A short digest of the smoke checks a verification ran (name, command or URL, expectation)."""
    canonical = json.dumps(list(checks), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def verified_value(at: dt.datetime, digest: str) -> str:
    return f"{iso(at.replace(microsecond=0))} checks={digest}"


def parse_verified(value: str | None) -> tuple[dt.datetime, str] | None:
    """(when, checks digest) of a ``baker:verified`` value; None when it is missing or malformed."""
    if not value:
        return None
    when_text, _, rest = value.partition(" ")
    when = parse_iso(when_text)
    if when is None or not rest.startswith("checks=") or len(rest) <= len("checks="):
        return None
    return when, rest.removeprefix("checks=")


def revoked_value(at: dt.datetime, by: str, reason: str, root: str | None = None) -> str:
    """The ``baker:revoked`` value; ``root``: the AMI whose revocation this copy or child inherits."""
    via = f" as a copy of {root}" if root else ""
    return f"{iso(at)} by {by}{via}: {reason}"[:MAX_VALUE]


def parse_revoked(value: str | None) -> dict[str, str] | None:
    """{at, by, reason, root} of a ``baker:revoked`` value; None when there is none."""
    if not value:
        return None
    head, _, reason = value.partition(": ")
    at, _, rest = head.partition(" by ")
    by, _, root = rest.partition(" as a copy of ")
    return {"at": at, "by": by, "reason": reason, "root": root}


def stage_value(stage: str, at: dt.datetime) -> str:
    return f"{stage} {iso(at)}"


def parse_stage(value: str | None) -> tuple[str, dt.datetime] | None:
    """(stage, since when) of a ``baker:gc-stage`` value."""
    if not value:
        return None
    stage, _, at = value.partition(" ")
    when = parse_iso(at)
    return (stage, when) if when is not None else None
