"""Release ledger, pins and the deploy lock: the state that must not live on a laptop.

All three live in one DynamoDB table (``state.table``, created on first use, on-demand billing),
shared by every CI runner and operator:

    pk = "<app>#<env>"   sk = "release#<at, ms>#<id>"   one item per release, ordered by time
                         sk = "pin"                     the pin, absent when not pinned
                         sk = "lock"                    the deploy lock
                         sk = "revoked#<AMI>"           an AMI revoked (``baker revoke``), absent once
                                                        unrevoked; revoke and unrevoke are also
                                                        releases of their kind, for the history

A release is written before the apply (outcome ``in_progress``) and again, the same item, when
its outcome is known. Reads page newest first with no cap: nothing is ever dropped (an SSM
parameter's history keeps only 100 versions, which is why the ledger is not one).

The lock is taken with a conditional write that only succeeds when nobody holds it or the
holder's lease ran out; renewed every quarter of the lease while held, released only by its
owner (conditional delete), breakable with ``baker unlock --force``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from baker.aws import AWS, error_code
from baker.clock import Clock
from baker.errors import AWSError, BakerError, Refused
from baker.provenance import iso, utc_now

log = logging.getLogger("baker")

KINDS = ("deploy", "release", "promote", "pin", "unpin", "rollback", "revoke", "unrevoke")
#: outcomes a release can end with (DESIGN.md), the intermediate one, and the recovery ones
OUTCOMES = (
    "in_progress",
    "healthy",
    "failed",
    "rolled_back",
    "rollback_failed",
    "interrupted",
    "abandoned",
    "done",
)
#: kinds whose healthy outcome means the fleet runs their AMI
FLEET_KINDS = ("deploy", "release", "promote", "pin", "rollback")


def now() -> dt.datetime:
    return utc_now()


def identity() -> str:
    """Who deploys: the CI job's identity when a CI system says it, else user@host.

    ``BAKER_ACTOR`` wins over everything, for pipelines that know better.
    """
    env = os.environ
    if env.get("BAKER_ACTOR"):
        return env["BAKER_ACTOR"]
    if env.get("GITHUB_ACTIONS") == "true":
        return (
            f"github:{env.get('GITHUB_ACTOR', '?')} ({env.get('GITHUB_REPOSITORY', '?')} "
            f"run {env.get('GITHUB_RUN_ID', '?')})"
        )
    if env.get("GITLAB_CI"):
        return f"gitlab:{env.get('GITLAB_USER_LOGIN', '?')} (job {env.get('CI_JOB_ID', '?')})"
    if env.get("BUILD_TAG") and env.get("JENKINS_URL"):
        return f"jenkins:{env['BUILD_TAG']}"
    if env.get("CI"):
        return f"ci:{env.get('CI_JOB_ID') or env.get('BUILD_ID') or 'unknown'}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass
class Release:
    """One change of what an environment runs: an AMI *and* its runtime configuration."""

    id: str
    kind: str
    app: str
    env: str
    ami_id: str | None
    at: str
    by: str
    outcome: str = "in_progress"
    version: str | None = None
    git_sha: str | None = None
    previous_ami_id: str | None = None
    #: the runtime: values of the environment this release ran with (restored by a rollback)
    runtime: dict[str, str] = field(default_factory=dict)
    #: the fleet it changed
    asg_name: str | None = None
    launch_template_id: str | None = None
    launch_template_version: str | None = None
    #: promote: {"env": source environment, "ami_id": source AMI, "region": source region}
    promoted_from: dict[str, str] | None = None
    reason: str | None = None
    healthy_at: str | None = None
    rollback_of: str | None = None
    #: pin: the pin's reason
    pin_reason: str | None = None
    #: blue_green: the color (blue or green) this release runs on; None for rolling
    color: str | None = None
    #: revoke, unrevoke: every AMI it marked (the AMI, its copies and children)
    revoked_amis: list[str] | None = None
    #: a layered image: the base image its app layer was built on (its baker:base-ami)
    base_ami_id: str | None = None
    recorded_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def sort_key(self) -> str:
        return f"release#{self.at}#{self.id}"


def new_release_id() -> str:
    return f"{now().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def precise_now() -> str:
    """UTC time with milliseconds: the order of releases within one second."""
    t = dt.datetime.now(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class StateTable:
    """The DynamoDB table of one account and region, created on first use."""

    def __init__(self, aws: AWS, name: str) -> None:
        self.ddb = aws.client("dynamodb")
        self.name = name
        self._ready = False

    def ensure(self) -> None:
        if self._ready:
            return
        try:
            self.ddb.describe_table(TableName=self.name)
        except AWSError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            log.info("creating the state table %s (ledger, pins, locks)", self.name)
            try:
                self.ddb.create_table(
                    TableName=self.name,
                    AttributeDefinitions=[
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "S"},
                    ],
                    KeySchema=[
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    BillingMode="PAY_PER_REQUEST",
                )
            except AWSError as exc2:
                if error_code(exc2) != "ResourceInUseException":  # someone else just made it
                    raise
            self.ddb.get_waiter("table_exists").wait(
                TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        self._ready = True

    def exists(self) -> bool:
        """Whether the table is there, creating nothing (for readers such as ``status``)."""
        if self._ready:
            return True
        try:
            self.ddb.describe_table(TableName=self.name)
        except AWSError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            return False
        self._ready = True
        return True


def partition(app: str, env: str) -> str:
    return f"{app}#{env}"


class Ledger:
    """Releases and the pin of one app in one environment."""

    def __init__(self, aws: AWS, *, table: str, app: str, env: str) -> None:
        self.table = StateTable(aws, table)
        self.ddb = self.table.ddb
        self.app = app
        self.env = env
        self.pk = partition(app, env)

    # -- releases

    def new(self, kind: str, ami_id: str | None, **fields: Any) -> Release:
        """A release not yet written: its id and time are fixed now (its place in the history)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        return Release(
            id=new_release_id(),
            kind=kind,
            app=self.app,
            env=self.env,
            ami_id=ami_id,
            at=precise_now(),
            by=fields.pop("by", None) or identity(),
            **fields,
        )

    def write(self, release: Release) -> Release:
        """Write the release's current state (the same item each time)."""
        if release.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {release.outcome!r}")
        self.table.ensure()
        release.recorded_at = iso(now())
        self.ddb.put_item(
            TableName=self.table.name,
            Item={
                "pk": {"S": self.pk},
                "sk": {"S": release.sort_key},
                "outcome": {"S": release.outcome},
                "doc": {"S": json.dumps(release.as_dict(), sort_keys=True)},
            },
        )
        return release

    def iter_releases(self) -> Iterator[Release]:
        """Every release, newest first, page by page (stop early to read less)."""
        self.table.ensure()
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table.name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": self.pk}, ":r": {"S": "release#"}},
            ScanIndexForward=False,
            ConsistentRead=True,
        )
        for page in pages:
            for item in page.get("Items", []):
                try:
                    yield Release.from_dict(json.loads(item["doc"]["S"]))
                except (KeyError, ValueError, TypeError):
                    log.warning("ledger %s: skipping an unreadable item %s", self.pk, item.get("sk"))

    def releases(self, limit: int | None = None) -> list[Release]:
        out = []
        for release in self.iter_releases():
            out.append(release)
            if limit is not None and len(out) >= limit:
                break
        return out

    def live(self) -> Release | None:
        """The newest release that ended healthy: what the environment should be running."""
        return next(
            (r for r in self.iter_releases() if r.outcome == "healthy" and r.kind in FLEET_KINDS), None
        )

    def last_good(self, *, exclude_ami: str | None = None, skip_revoked: bool = True) -> Release | None:
        """The newest healthy release on another AMI than ``exclude_ami`` (the rollback target),
        passing over releases of revoked AMIs."""
        revoked = self.revoked() if skip_revoked else {}
        return next(
            (
                r
                for r in self.iter_releases()
                if r.outcome == "healthy"
                and r.kind in FLEET_KINDS
                and r.ami_id != exclude_ami
                and r.ami_id not in revoked
            ),
            None,
        )

    def last_good_besides(self, failed: Release, *, skip_revoked: bool = True) -> Release | None:
        """The newest healthy release that is not ``failed``'s AMI *and* runtime: what a failed
        release rolls back to, passing over releases of revoked AMIs. A runtime change alone that
        fails goes back to the same AMI with the runtime values it ran with before."""
        revoked = self.revoked() if skip_revoked else {}
        return next(
            (
                r
                for r in self.iter_releases()
                if r.outcome == "healthy"
                and r.kind in FLEET_KINDS
                and r.id != failed.id
                and (r.ami_id, r.runtime) != (failed.ami_id, failed.runtime)
                and r.ami_id not in revoked
            ),
            None,
        )

    def healthy_on(self, ami_id: str) -> Release | None:
        """The newest healthy release of ``ami_id`` in this environment."""
        return next(
            (
                r
                for r in self.iter_releases()
                if r.outcome == "healthy" and r.kind in FLEET_KINDS and r.ami_id == ami_id
            ),
            None,
        )

    def open(self) -> list[Release]:
        """Releases still ``in_progress``: under the deploy lock, those of a run that died."""
        return [r for r in self.iter_releases() if r.outcome == "in_progress"]

    # -- revocations

    def revoked(self) -> dict[str, dict[str, Any]]:
        """AMI -> its revocation (at, by, reason, root) for every AMI revoked in this ledger."""
        if not self.table.exists():
            return {}
        pages = self.ddb.get_paginator("query").paginate(
            TableName=self.table.name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": self.pk}, ":r": {"S": "revoked#"}},
            ConsistentRead=True,
        )
        found: dict[str, dict[str, Any]] = {}
        for page in pages:
            for item in page.get("Items", []):
                try:
                    found[item["sk"]["S"].removeprefix("revoked#")] = json.loads(item["doc"]["S"])
                except (KeyError, ValueError):
                    log.warning("ledger %s: skipping an unreadable item %s", self.pk, item.get("sk"))
        return found

    def set_revoked(self, ami_ids: list[str], record: dict[str, Any]) -> None:
        self.table.ensure()
        doc = json.dumps(record, sort_keys=True)
        for ami in ami_ids:
            self.ddb.put_item(
                TableName=self.table.name,
                Item={"pk": {"S": self.pk}, "sk": {"S": f"revoked#{ami}"}, "doc": {"S": doc}},
            )

    def clear_revoked(self, ami_ids: list[str]) -> None:
        self.table.ensure()
        for ami in ami_ids:
            key = {"pk": {"S": self.pk}, "sk": {"S": f"revoked#{ami}"}}
            self.ddb.delete_item(TableName=self.table.name, Key=key)

    # -- pin

    def pin(self) -> dict[str, Any] | None:
        self.table.ensure()
        item = self.ddb.get_item(
            TableName=self.table.name, Key={"pk": {"S": self.pk}, "sk": {"S": "pin"}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        try:
            data = json.loads(item["doc"]["S"])
        except (KeyError, ValueError):
            return {"ami_id": None, "reason": "unreadable pin item", "by": None, "at": None}
        return data if isinstance(data, dict) else None

    def set_pin(self, ami_id: str, *, reason: str, by: str | None = None) -> dict[str, Any]:
        self.table.ensure()
        record = {"ami_id": ami_id, "reason": reason, "by": by or identity(), "at": iso(now())}
        self.ddb.put_item(
            TableName=self.table.name,
            Item={"pk": {"S": self.pk}, "sk": {"S": "pin"}, "doc": {"S": json.dumps(record, sort_keys=True)}},
        )
        return record

    def clear_pin(self) -> dict[str, Any] | None:
        """Remove the pin; returns what it was (None when there was none)."""
        self.table.ensure()
        old = self.ddb.delete_item(
            TableName=self.table.name,
            Key={"pk": {"S": self.pk}, "sk": {"S": "pin"}},
            ReturnValues="ALL_OLD",
        ).get("Attributes")
        if not old:
            return None
        try:
            data = json.loads(old["doc"]["S"])
        except (KeyError, ValueError):
            return {"ami_id": None}
        return data if isinstance(data, dict) else {"ami_id": None}


class Lock:
    """The deploy lock of one app in one environment: a leased item of the state table.

    Use as a context manager; while held, a daemon thread renews the lease every quarter of it.
    """

    def __init__(
        self,
        aws: AWS,
        *,
        table: str,
        app: str,
        env: str,
        lease_seconds: int = 120,
        owner: str | None = None,
        purpose: str = "",
        clock: Clock | None = None,
    ) -> None:
        self.table = StateTable(aws, table)
        self.ddb = self.table.ddb
        self.lock_id = f"{app}/{env}"
        self.key = {"pk": {"S": partition(app, env)}, "sk": {"S": "lock"}}
        self.lease = lease_seconds
        self.owner = owner or f"{identity()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.purpose = purpose
        #: the lease is written and compared in its wall time (tests move it instead of waiting)
        self.clock = clock or Clock()
        self.held = False
        #: the holder whose expired lease this lock took over (a run that died), if any
        self.took_over: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.renewals = 0

    def holder(self) -> dict[str, Any] | None:
        self.table.ensure()
        item = self.ddb.get_item(TableName=self.table.name, Key=self.key, ConsistentRead=True).get("Item")
        return _plain(item) if item else None

    def acquire(self) -> None:
        """Take the lock or raise Refused naming who holds it and since when."""
        self.table.ensure()
        t = self.clock.wall()
        item = {
            **self.key,
            "owner": {"S": self.owner},
            "since": {"S": iso(now())},
            "expires_at": {"N": str(int(t + self.lease))},
            "purpose": {"S": self.purpose or "deploy"},
        }
        try:
            resp = self.ddb.put_item(
                TableName=self.table.name,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(int(t))}},
                ReturnValues="ALL_OLD",
            )
        except AWSError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            held = self.holder() or {}
            expires = held.get("expires_at")
            left = f", lease ends in {int(expires - t)}s" if isinstance(expires, int | float) else ""
            raise Refused(
                f"deploy lock {self.lock_id} is held by {held.get('owner', '?')} "
                f"since {held.get('since', '?')}"
                f" ({held.get('purpose', 'deploy')}{left}); wait, or break a stale lock with "
                f"'baker unlock -e {self.lock_id.split('/', 1)[1]} --force'",
                details={"lock": held, "rule": "lock"},
            ) from exc
        old = resp.get("Attributes")
        self.took_over = _plain(old) if old else None
        self.held = True
        log.debug("deploy lock %s taken by %s", self.lock_id, self.owner)

    def renew(self) -> bool:
        """Extend the lease if we still own the lock; False when it was taken from us."""
        try:
            self.ddb.update_item(
                TableName=self.table.name,
                Key=self.key,
                UpdateExpression="SET expires_at = :exp",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":exp": {"N": str(int(self.clock.wall() + self.lease))},
                    ":me": {"S": self.owner},
                },
            )
        except AWSError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                log.warning("deploy lock %s is no longer ours (broken with --force?)", self.lock_id)
                self.held = False
                return False
            raise
        self.renewals += 1
        return True

    def _renew_loop(self) -> None:
        interval = max(self.lease / 4, 5)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except AWSError as exc:  # keep trying: the lease still has three quarters left
                log.warning("renewing deploy lock %s failed: %s", self.lock_id, exc.message)

    def release(self) -> None:
        """Delete the lock if (and only if) we own it."""
        self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join(timeout=5)
        if not self.held:
            return
        try:
            self.ddb.delete_item(
                TableName=self.table.name,
                Key=self.key,
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )
        except AWSError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                # the state table itself is gone (deleted, or an emulator restarted without its
                # state): so is the lock that lived in it
                log.warning(
                    "deploy lock %s: the state table %s is gone, and the lock with it",
                    self.lock_id,
                    self.table.name,
                )
            elif error_code(exc) != "ConditionalCheckFailedException":
                raise
            else:
                log.warning("deploy lock %s was no longer ours; left it alone", self.lock_id)
        self.held = False

    def force_release(self) -> dict[str, Any] | None:
        """Break the lock whoever holds it; returns what it was (None when it was free)."""
        self.table.ensure()
        resp = self.ddb.delete_item(TableName=self.table.name, Key=self.key, ReturnValues="ALL_OLD")
        old = resp.get("Attributes")
        return _plain(old) if old else None

    def __enter__(self) -> Lock:
        self.acquire()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"lock-{self.lock_id}", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        try:
            self.release()
        except BakerError as error:
            if exc_type is None:
                raise
            # the error that ends the run says what happened; this one must not replace it
            log.warning("could not release deploy lock %s: %s", self.lock_id, error.message)


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if key in ("pk", "sk"):
            continue
        if "S" in value:
            out[key] = value["S"]
        elif "N" in value:
            num = value["N"]
            out[key] = int(num) if num.lstrip("-").isdigit() else float(num)
        else:
            out[key] = next(iter(value.values()), None)
    return out


def lock_for(
    aws: AWS,
    *,
    table: str,
    app: str,
    env: str,
    lease_seconds: int,
    purpose: str = "",
    clock: Clock | None = None,
) -> Lock:
    """The deploy lock of ``app`` in ``env``."""
    return Lock(aws, table=table, app=app, env=env, lease_seconds=lease_seconds, purpose=purpose, clock=clock)
