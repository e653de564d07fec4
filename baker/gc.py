"""gc: deregister the app's AMIs nobody needs and delete their snapshots (a dry run unless --apply).

Where: every account and region of the project's environments (each one's home region and its
``bake.copy_to_regions``), deduplicated; ``-e`` narrows where gc deletes, never what it reads.
Which AMIs: this account's images tagged ``baker:app`` = the app. What keeps an AMI (each kept
AMI says why):

- it is not ``available`` (a bake or copy still in progress);
- any environment's pin names it, a release in progress deploys it, or it is among the last N
  distinct AMIs of healthy releases of any environment (the ledgers of *all* environments are read,
  whatever ``-e`` says);
- any Auto Scaling group of its account and region launches it (the launch template version the
  group names, or its launch configuration), or it is the ``$Default`` version of any launch
  template there. Found from AWS itself, every group and template of the region, not only those the
  ledger names: a fleet baker does not know about still holds on to its AMI;
- an instance not terminated runs it;
- it is younger than ``--older-than`` days (default 14: a bake may soak in dev for days before it
  is promoted; the young are never worth the risk);
- it is outside the environments gc was asked to clean (``-e``);
- it is the source of a promoted copy that is kept (``baker:promoted-to`` on the source,
  ``baker:promoted-from`` on the copy), or a regional copy of a kept AMI from the same bake (same
  account, recipe, build time and promotion source): an AMI's copies stay or go together.

- it was launched within ``--launched-within`` days (LastLaunchedTime);
- where the account offers DescribeImageReferences, an instance or launch template uses it (also
  outside baker's environments).

The rest is walked through stages, one per run (baker/lifecycle.py): deprecated, then disabled
after ``--disable-after`` days, then deregistered with its snapshots after ``--delete-after`` days
(a revoked AMI goes straight to disabled; a kept AMI gc had begun to retire is brought back). The
live, previous-good and pinned AMIs of every environment get deregistration protection, lifted when
they stop being any of those. Before the first deregistration of a batch its snapshots get
``baker:gc-pending``; a run interrupted after a deregistration leaves snapshots whose AMI is gone,
and the next run deletes every snapshot so tagged that no image still uses. Reads are batched and
paginated: calls grow with the number of AMIs in chunks of 200.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from baker import fleet, images, lifecycle, provenance
from baker.aws import AWS, Client, error_code
from baker.config import Environment, Project
from baker.errors import AWSError, UsageError
from baker.images import Image
from baker.ledger import FLEET_KINDS, Ledger
from baker.provenance import iso, parse_iso, utc_now
from baker.retention import (
    DEFAULT_DELETE_AFTER_DAYS,
    DEFAULT_DISABLE_AFTER_DAYS,
    DEFAULT_KEEP,
    DEFAULT_LAUNCHED_WITHIN_DAYS,
    DEFAULT_OLDER_THAN_DAYS,
)

log = logging.getLogger("baker")


# ---------------------------------------------------------------- where


@dataclass
class Place:
    """One account and region gc looks in, and the environments that put it on the list."""

    account_id: str
    region: str
    aws: AWS
    envs: list[str] = field(default_factory=list)
    #: gc may delete here (one of the environments named by -e, or no -e)
    deletable: bool = False

    @property
    def name(self) -> str:
        return f"{self.account_id}/{self.region}"


def places(
    envs: Sequence[Environment], aws_for: Callable[[Environment], AWS], only: Iterable[str] = ()
) -> list[Place]:
    """Every account and region of ``envs`` (home and copy regions), once each."""
    chosen = set(only)
    found: dict[tuple[str, str], Place] = {}
    for env in envs:
        s = env.settings
        home: AWS | None = None
        for region in [s.aws.region, *s.bake.copy_to_regions]:
            key = (s.aws.account_id, region)
            if key not in found:
                home = home or aws_for(env)
                aws = home if region == home.region else home.in_region(region)
                found[key] = Place(account_id=s.aws.account_id, region=region, aws=aws)
            place = found[key]
            if env.name not in place.envs:
                place.envs.append(env.name)
            if not chosen or env.name in chosen:
                place.deletable = True
    return list(found.values())


# ---------------------------------------------------------------- why an AMI stays

#: AMI id -> the reasons it stays, in the order they were found
Reasons = dict[str, list[str]]


def add(reasons: Reasons, ami_id: str | None, why: str) -> None:
    if ami_id:
        reasons.setdefault(ami_id, []).append(why)


def ordinal(n: int) -> str:
    return {1: "newest", 2: "2nd newest", 3: "3rd newest"}.get(n, f"{n}th newest")


def ledger_reasons(ledger: Ledger, keep: int, protect: set[str] | None = None) -> Reasons:
    """The pin, releases in progress, and the last ``keep`` distinct AMIs of healthy releases.
    ``protect`` gets the pinned, live and previous-good AMIs (deregistration protection)."""
    reasons: Reasons = {}
    protect = set() if protect is None else protect
    env = ledger.env
    if not ledger.table.exists():
        return reasons
    pin = ledger.pin()
    if pin and pin.get("ami_id"):
        protect.add(pin["ami_id"])
        add(
            reasons,
            pin["ami_id"],
            f"pinned in {env} by {pin.get('by')} at {pin.get('at')}: {pin.get('reason')!r}",
        )
    good: list[str] = []
    # the live AMI and the previous one (what `baker rollback` goes back to) always stay, whatever
    # --keep says: deleting the rollback target is how a 3 a.m. rollback fails
    wanted = max(keep, 2)
    for release in ledger.iter_releases():
        if release.outcome == "in_progress":
            add(reasons, release.ami_id, f"{release.kind} {release.id} in {env} is in progress")
        if release.outcome != "healthy" or release.kind not in FLEET_KINDS or not release.ami_id:
            continue
        if release.ami_id in good:
            continue
        good.append(release.ami_id)
        if len(good) <= 2:
            protect.add(release.ami_id)
        if len(good) == 1:
            what = f"live in {env} ({release.kind} {release.id})"
        elif len(good) == 2 and keep < 2:
            what = f"the previous good release in {env}, the rollback target ({release.kind} {release.id})"
        else:
            what = (
                f"the {ordinal(len(good))} healthy AMI in {env} ({release.kind} {release.id}, --keep {keep})"
            )
        add(reasons, release.ami_id, what)
        if len(good) >= wanted:
            break
    return reasons


def fleet_reasons(aws: AWS) -> Reasons:
    """AMIs the region's fleets launch: every group's launch template version or launch
    configuration, and every launch template's default version."""
    reasons: Reasons = {}
    ec2 = aws.client("ec2")
    autoscaling = aws.client("autoscaling")
    #: template -> version asked for -> groups
    wanted: dict[tuple[str, str], dict[str, list[str]]] = {}
    configs: dict[str, list[str]] = {}
    for page in autoscaling.get_paginator("describe_auto_scaling_groups").paginate():
        for group in page.get("AutoScalingGroups", []):
            name = group["AutoScalingGroupName"]
            for spec in fleet.template_specs(group):
                key = fleet.template_key(spec)
                if key is not None:
                    version = str(spec.get("Version") or "$Default")
                    wanted.setdefault(key, {}).setdefault(version, []).append(name)
            if group.get("LaunchConfigurationName"):
                configs.setdefault(group["LaunchConfigurationName"], []).append(name)
    for page in ec2.get_paginator("describe_launch_template_versions").paginate(
        Versions=["$Default"], PaginationConfig={"PageSize": 200}
    ):
        for data in page.get("LaunchTemplateVersions", []):
            add(
                reasons,
                data.get("LaunchTemplateData", {}).get("ImageId"),
                f"the default version ({data.get('VersionNumber')}) of launch template "
                f"{data.get('LaunchTemplateName')} ({data.get('LaunchTemplateId')})",
            )
    for (kind, ident), versions in wanted.items():
        try:
            found = ec2.describe_launch_template_versions(**{kind: ident, "Versions": sorted(versions)})
        except AWSError as exc:
            if not error_code(exc).startswith("InvalidLaunchTemplate"):
                raise
            log.warning("gc: launch template %s of %s: %s", ident, versions, exc.message)
            continue
        rows = found.get("LaunchTemplateVersions", [])
        latest = max((int(d.get("VersionNumber") or 0) for d in rows), default=0)
        for data in rows:
            number = str(data.get("VersionNumber"))
            groups: list[str] = list(versions.get(number, []))
            if data.get("DefaultVersion"):
                groups += versions.get("$Default", [])
            if int(number) == latest:
                groups += versions.get("$Latest", [])
            if groups:
                add(
                    reasons,
                    data.get("LaunchTemplateData", {}).get("ImageId"),
                    f"Auto Scaling group {', '.join(sorted(set(groups)))} launches it (launch template "
                    f"{data.get('LaunchTemplateId')} version {number})",
                )
    if configs:
        for page in autoscaling.get_paginator("describe_launch_configurations").paginate():
            for lc in page.get("LaunchConfigurations", []):
                name = lc.get("LaunchConfigurationName", "")
                if name in configs:
                    add(
                        reasons,
                        lc.get("ImageId"),
                        f"Auto Scaling group {', '.join(configs[name])} launches it (launch configuration "
                        f"{name})",
                    )
    return reasons


def instance_reasons(ec2: Client, ami_ids: Iterable[str]) -> Reasons:
    reasons: Reasons = {}
    for ami, found in images.instances_using(ec2, ami_ids).items():
        first = ", ".join(f"{iid} ({state})" for iid, state in found[:3])
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        add(reasons, ami, f"used by instance {first}{more}")
    return reasons


def bake_key(image: Image) -> tuple[str, str, str, str] | None:
    """What the regional copies of one bake (or of one promotion) share."""
    recipe, built = image.tags.get(provenance.RECIPE), image.tags.get(provenance.BUILT_AT)
    if not (recipe and built):
        return None
    source = (image.promoted_from or "").split(" ", 1)[0]
    return (image.owner, recipe, built, source)


def decide(
    found: Sequence[Image],
    evidence: Reasons,
    *,
    now: dt.datetime,
    older_than: dt.timedelta,
    deletable: Callable[[Image], bool] = lambda image: True,
) -> Reasons:
    """Pure: the reasons each kept image stays (an image absent from the answer goes)."""
    kept: Reasons = {}
    by_id = {i.id: i for i in found}
    for image in found:
        why: list[str] = []
        if image.state not in ("available", "disabled"):
            why.append(f"{image.state}, not available (being created or copied)")
        why += evidence.get(image.id, [])
        created = parse_iso(image.created)
        if created is None:
            why.append(f"its creation date is unknown ({image.created!r})")
        elif now - created < older_than:
            why.append(f"younger than {older_than.total_seconds() / 86400:g} days (created {image.created})")
        if not deletable(image):
            why.append("outside the environments gc was asked to clean (-e)")
        if why:
            kept[image.id] = why

    # an AMI's promoted copies and regional copies hold on to it
    sources: dict[str, set[str]] = {}
    for image in found:
        src = (image.promoted_from or "").split(" ", 1)[0]
        if src:
            sources.setdefault(image.id, set()).add(src)
        for item in (image.tags.get(provenance.PROMOTED_TO) or "").split():
            copy_id = item.rsplit(":", 1)[-1]
            if copy_id.startswith("ami-"):
                sources.setdefault(copy_id, set()).add(image.id)
    siblings: dict[tuple[str, str, str, str], list[str]] = {}
    for image in found:
        key = bake_key(image)
        if key is not None:
            siblings.setdefault(key, []).append(image.id)
    queue = list(kept)
    while queue:
        keeper = by_id.get(queue.pop())
        if keeper is None:
            continue
        related = [
            (src, f"the source of promoted copy {keeper.id} ({keeper.region}), which is kept")
            for src in sorted(sources.get(keeper.id, ()))
        ]
        key = bake_key(keeper)
        related += [
            (sib, f"a regional copy of kept {keeper.id} ({keeper.region}): the same bake")
            for sib in (siblings.get(key, []) if key else [])
            if sib != keeper.id
        ]
        # an app layer's image is built on its base image (its snapshot's parent); the next
        # app-layer bake of the same base recipe reuses the base too
        base = keeper.tags.get(provenance.BASE_AMI)
        if base:
            related.append((base, f"the base image of kept {keeper.id} ({keeper.region}), its app layer"))
        for ami, because in related:
            if ami in by_id and ami not in kept:
                kept[ami] = [because]
                queue.append(ami)
    return kept


# ---------------------------------------------------------------- the run


@dataclass
class Look:
    """What one place holds: the app's images, what keeps which, and snapshots left by a run
    that was interrupted."""

    place: Place
    images: list[Image]
    reasons: Reasons
    leftovers: list[dict[str, Any]]
    #: DescribeImageReferences answered here (else baker's own reads decided alone)
    references: bool = False


class GC:
    def __init__(
        self,
        project: Project,
        envs: Sequence[Environment],
        aws_for: Callable[[Environment], AWS],
        *,
        only: Sequence[str] = (),
        keep: int = DEFAULT_KEEP,
        older_than_days: float = DEFAULT_OLDER_THAN_DAYS,
        disable_after_days: float = DEFAULT_DISABLE_AFTER_DAYS,
        delete_after_days: float = DEFAULT_DELETE_AFTER_DAYS,
        launched_within_days: float = DEFAULT_LAUNCHED_WITHIN_DAYS,
        clock: Callable[[], dt.datetime] = utc_now,
    ) -> None:
        if keep < 1:
            raise UsageError("--keep must be at least 1: every environment keeps its live AMI")
        ages = {
            "--older-than": older_than_days,
            "--disable-after": disable_after_days,
            "--delete-after": delete_after_days,
            "--launched-within": launched_within_days,
        }
        for option, days in ages.items():
            if days < 0:
                raise UsageError(f"{option} must not be negative ({days:g})")
        known = {e.name for e in envs}
        unknown = sorted(set(only) - known)
        if unknown:
            raise UsageError(f"unknown environment {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        self.project = project
        self.app = project.app.name
        self.envs = list(envs)
        self.aws_for = aws_for
        self.only = list(only)
        self.keep = keep
        self.older_than = dt.timedelta(days=older_than_days)
        self.disable_after = dt.timedelta(days=disable_after_days)
        self.delete_after = dt.timedelta(days=delete_after_days)
        self.launched_within = launched_within_days
        self.clock = clock
        #: the live, previous-good and pinned AMIs of every environment (deregistration protection)
        self.protect: set[str] = set()
        #: set on Ctrl-C: the places' workers stop before their next change
        self._stop = threading.Event()
        self._aws: dict[str, AWS] = {}

    def aws(self, env: Environment) -> AWS:
        if env.name not in self._aws:
            self._aws[env.name] = self.aws_for(env)
        return self._aws[env.name]

    def ledgers(self) -> Reasons:
        """Every environment's pin and last releases, concurrently (an unreadable ledger stops gc:
        what it would have kept is unknown)."""
        table = self.project.settings.state.table

        def one(env: Environment) -> Reasons:
            ledger = Ledger(self.aws(env), table=table, app=self.app, env=env.name)
            return ledger_reasons(ledger, self.keep, self.protect)

        merged: Reasons = {}
        with ThreadPoolExecutor(max_workers=min(8, len(self.envs) or 1)) as pool:
            for reasons in pool.map(one, self.envs):
                for ami, why in reasons.items():
                    merged.setdefault(ami, []).extend(why)
        return merged

    def look(self, place: Place) -> Look:
        ec2 = place.aws.client("ec2")
        found = images.of_app(ec2, self.app, place.region)
        reasons = fleet_reasons(place.aws)
        for ami, why in instance_reasons(ec2, [i.id for i in found]).items():
            reasons.setdefault(ami, []).extend(why)
        now = self.clock()
        for image in found:
            recent = lifecycle.launched_within(image, now=now, days=self.launched_within)
            if recent:
                add(reasons, image.id, recent)
        refs = images.references(ec2, [i.id for i in found])
        for ami, arns in (refs or {}).items():
            for arn in arns:
                if ":instance/" not in arn:  # instances: said above, with their state
                    add(reasons, ami, f"used by {arn.rsplit(':', 1)[-1]} (DescribeImageReferences)")
        leftovers: list[dict[str, Any]] = []
        if place.deletable:
            in_use = {s for i in found for s in i.snapshots}
            pages = ec2.get_paginator("describe_snapshots").paginate(
                OwnerIds=["self"], Filters=[{"Name": "tag-key", "Values": [provenance.GC_PENDING]}]
            )
            leftovers = [
                s for page in pages for s in page.get("Snapshots", []) if s["SnapshotId"] not in in_use
            ]
        return Look(place, found, reasons, leftovers, references=refs is not None)

    def run(self, *, apply: bool = False) -> dict[str, Any]:
        where = places(self.envs, self.aws, self.only)
        evidence = self.ledgers()
        with ThreadPoolExecutor(max_workers=min(8, len(where) or 1)) as pool:
            looks = list(pool.map(self.look, where))
        home = {i.id: look.place for look in looks for i in look.images}
        for look in looks:
            for ami, why in look.reasons.items():
                evidence.setdefault(ami, []).extend(why)
        every = [i for look in looks for i in look.images]
        kept = decide(
            every,
            evidence,
            now=self.clock(),
            older_than=self.older_than,
            deletable=lambda image: home[image.id].deletable,
        )
        with ThreadPoolExecutor(max_workers=min(8, len(looks) or 1)) as pool:
            try:
                done = list(pool.map(lambda look: self.clean(look, kept, apply=apply), looks))
            except KeyboardInterrupt:
                self._stop.set()  # the workers finish the change under way and stop
                raise
        deleted = [d for part in done for d in part["deleted"]]
        snapshots = [s for part in done for s in part["snapshots"]]
        failed = [f for part in done for f in part["failed"]]
        result = {
            "app": self.app,
            "dry_run": not apply,
            "keep": self.keep,
            "older_than_days": self.older_than.total_seconds() / 86400,
            "disable_after_days": self.disable_after.total_seconds() / 86400,
            "delete_after_days": self.delete_after.total_seconds() / 86400,
            "references": all(look.references for look in looks),
            "places": [
                {"account_id": p.account_id, "region": p.region, "envs": p.envs, "deletable": p.deletable}
                for p in where
            ],
            "deleted": deleted,
            "kept": [
                {
                    "ami_id": i.id,
                    "account_id": home[i.id].account_id,
                    "region": i.region,
                    "version": i.version,
                    "created": i.created,
                    "reason": kept[i.id][0],
                    "reasons": kept[i.id],
                }
                for i in every
                if i.id in kept
            ],
            **{stage: [r for part in done for r in part[stage]] for stage in lifecycle.CHANGES},
            "snapshots_deleted": snapshots,
            "failed": failed,
            "bytes_freed": sum(d["bytes"] for d in deleted) + sum(s["bytes"] for s in snapshots),
        }
        if failed:
            raise AWSError(
                f"gc: {len(failed)} change(s) failed (first: {failed[0]['error']}); what was deleted is "
                "listed; run gc again to finish",
                tool="aws",
                details=result,
            )
        return result

    def clean(self, look: Look, kept: Reasons, *, apply: bool) -> dict[str, list[dict[str, Any]]]:
        """Take the unused images of one place one stage on, protect what must stay (or, in a dry
        run, say what would happen)."""
        place = look.place
        ec2 = place.aws.client("ec2")
        now = self.clock()
        steps = [
            lifecycle.next_step(i, now=now, disable_after=self.disable_after, delete_after=self.delete_after)
            for i in look.images
            if i.id not in kept
        ]
        doomed = [st.image for st in steps if st.action == "deregister"]
        staged = [st for st in steps if st.action != "deregister"]
        changes = lifecycle.changes(
            look.images if place.deletable else [], staged, kept, self.protect, place.account_id
        )
        sizes = images.snapshot_sizes(ec2, [s for i in doomed for s in i.snapshots])
        deleted = [
            {
                "ami_id": i.id,
                "account_id": place.account_id,
                "region": i.region,
                "version": i.version,
                "created": i.created,
                "snapshots": list(i.snapshots),
                "bytes": sum(sizes.get(s, 0) for s in i.snapshots),
            }
            for i in doomed
        ]
        leftovers = [
            {
                "snapshot_id": s["SnapshotId"],
                "account_id": place.account_id,
                "region": place.region,
                "bytes": int(s.get("VolumeSize") or 0) * images.GIB,
                "reason": f"left by an interrupted gc ({provenance.GC_PENDING}: "
                f"{next((t['Value'] for t in s.get('Tags', []) if t['Key'] == provenance.GC_PENDING), '')})",
            }
            for s in look.leftovers
        ]
        failed: list[dict[str, Any]] = []
        if not apply:
            return {"deleted": deleted, "snapshots": leftovers, "failed": failed, **changes}
        by_id = {i.id: i for i in look.images}
        steps_of = {st.image.id: st for st in staged}
        for what, rows in changes.items():
            reached = []
            for row in rows:
                if self._stop.is_set():
                    break
                image = by_id[row["ami_id"]]
                try:
                    if what == "restored":
                        lifecycle.restore(ec2, image)
                    elif what in ("protected", "unprotected"):
                        lifecycle.set_protection(ec2, image, what == "protected")
                    elif what != "waiting":
                        lifecycle.carry_out(ec2, steps_of[image.id], now=now)
                        reached.append(image.id)
                except AWSError as exc:
                    log.error("gc: %s %s in %s: %s", what, image.id, place.name, exc.message)
                    failed.append({"ami_id": image.id, "region": image.region, "error": exc.message})
            lifecycle.record(ec2, reached, what, now)  # also when stopped: what did reach its stage
            if self._stop.is_set():
                raise KeyboardInterrupt
        mark = {"Key": provenance.GC_PENDING, "Value": f"{iso(self.clock())} gc of {self.app}"}
        done: list[dict[str, Any]] = []
        for start in range(0, len(doomed), images.BATCH):
            chunk = doomed[start : start + images.BATCH]
            snaps = [s for i in chunk for s in i.snapshots]
            for part in range(0, len(snaps), images.BATCH):
                ec2.create_tags(Resources=snaps[part : part + images.BATCH], Tags=[mark])
            for image, entry in zip(chunk, deleted[start : start + images.BATCH], strict=True):
                if self._stop.is_set():
                    raise KeyboardInterrupt
                try:
                    images.deregister(ec2, image)
                except AWSError as exc:
                    log.error("gc: %s in %s: %s", image.id, place.name, exc.message)
                    failed.append({"ami_id": image.id, "region": image.region, "error": exc.message})
                    continue
                log.info("gc: deregistered %s (%s) and its snapshots", image.id, place.name)
                done.append(entry)
        gone = []
        for snap in leftovers:
            try:
                ec2.delete_snapshot(SnapshotId=snap["snapshot_id"])
            except AWSError as exc:
                code = error_code(exc)
                if code == "InvalidSnapshot.NotFound":
                    gone.append(snap)
                    continue
                log.error("gc: snapshot %s in %s: %s", snap["snapshot_id"], place.name, exc.message)
                failed.append(
                    {"snapshot_id": snap["snapshot_id"], "region": place.region, "error": exc.message}
                )
                continue
            gone.append(snap)
        return {"deleted": done, "snapshots": gone, "failed": failed, **changes}
