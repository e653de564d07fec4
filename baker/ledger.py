"""Release ledger, pins and the deploy lock: the state that must not live on a laptop.

Ledger: one SSM parameter per app and environment (``{prefix}/{app}/{env}/releases``); every
write is a new parameter version, so the parameter's version history *is* the release history
and many CI runners share it. A release is written before the apply (outcome ``in_progress``)
and again when its outcome is known, both under the same release ``id``; readers keep the last
state of each id. (SSM keeps the newest 100 versions of a parameter.)

Pin: ``{prefix}/{app}/{env}/pin``, JSON with ami_id, reason, by, at; absent when not pinned.

Lock: one DynamoDB item per app and environment, taken with a conditional write that only
succeeds when nobody holds it or the holder's lease ran out; renewed while held, released only
by its owner (conditional delete), breakable with ``baker unlock --force``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

from baker.aws import AWS, error_code
from baker.errors import AWSError, Refused

log = logging.getLogger("baker")

#: outcomes a release can end with (DESIGN.md) plus the two intermediate ones
OUTCOMES = ("in_progress", "healthy", "failed", "rolled_back", "rollback_failed", "interrupted", "planned")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(when: dt.datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


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


def _path_part(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in value)


class Ledger:
    """Releases and the pin of one app in one environment."""

    def __init__(self, aws: AWS, *, prefix: str, app: str, env: str) -> None:
        self.ssm = aws.client("ssm")
        self.app = app
        self.env = env
        base = f"{prefix.rstrip('/')}/{_path_part(app)}/{_path_part(env)}"
        self.releases_name = f"{base}/releases"
        self.pin_name = f"{base}/pin"

    # -- releases

    def new_id(self) -> str:
        return f"{now().strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"

    def write(self, record: dict[str, Any]) -> int:
        """Append one state of a release; returns the parameter version it became."""
        if record.get("outcome") not in OUTCOMES:
            raise ValueError(f"unknown outcome {record.get('outcome')!r}")
        record = {"app": self.app, "env": self.env, **record, "recorded_at": iso(now())}
        resp = self.ssm.put_parameter(
            Name=self.releases_name,
            Value=json.dumps(record, sort_keys=True),
            Type="String",
            Overwrite=True,
            Description=f"baker release ledger of {self.app} in {self.env}",
        )
        return int(resp.get("Version", 0))

    def _versions(self) -> list[dict[str, Any]]:
        """Every recorded state, oldest first."""
        out: list[dict[str, Any]] = []
        try:
            pages = self.ssm.get_paginator("get_parameter_history").paginate(Name=self.releases_name)
            for page in pages:
                for p in page.get("Parameters", []):
                    try:
                        rec = json.loads(p["Value"])
                    except ValueError:
                        continue
                    if isinstance(rec, dict):
                        rec["ledger_version"] = p.get("Version")
                        out.append(rec)
        except AWSError as exc:
            if error_code(exc) == "ParameterNotFound":
                return []
            raise
        out.sort(key=lambda r: r.get("ledger_version") or 0)
        return out

    def releases(self) -> list[dict[str, Any]]:
        """Every release in its last recorded state, newest first."""
        latest: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        for rec in self._versions():
            rid = str(rec.get("id") or rec.get("ledger_version"))
            if rid not in latest:
                order.append(rid)
            latest[rid] = rec
        return [latest[rid] for rid in reversed(order)]

    def live(self) -> dict[str, Any] | None:
        """The newest release that ended healthy: what the environment should be running."""
        return next((r for r in self.releases() if r.get("outcome") == "healthy"), None)

    def last_good(self, *, exclude_ami: str | None = None) -> dict[str, Any] | None:
        """The newest healthy release on another AMI than ``exclude_ami`` (the rollback target)."""
        return next(
            (r for r in self.releases() if r.get("outcome") == "healthy" and r.get("ami_id") != exclude_ami),
            None,
        )

    # -- pin

    def pin(self) -> dict[str, Any] | None:
        try:
            value = self.ssm.get_parameter(Name=self.pin_name)["Parameter"]["Value"]
        except AWSError as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise
        try:
            data = json.loads(value)
        except ValueError:
            data = {"ami_id": None, "reason": value}
        return data if isinstance(data, dict) else None

    def set_pin(self, ami_id: str, *, reason: str, by: str | None = None) -> dict[str, Any]:
        record = {"ami_id": ami_id, "reason": reason, "by": by or identity(), "at": iso(now())}
        self.ssm.put_parameter(
            Name=self.pin_name,
            Value=json.dumps(record, sort_keys=True),
            Type="String",
            Overwrite=True,
            Description=f"baker pin of {self.app} in {self.env}",
        )
        return record

    def clear_pin(self) -> dict[str, Any] | None:
        """Remove the pin; returns what it was (None when there was none)."""
        was = self.pin()
        if was is not None:
            try:
                self.ssm.delete_parameter(Name=self.pin_name)
            except AWSError as exc:
                if error_code(exc) != "ParameterNotFound":
                    raise
        return was


class Lock:
    """The deploy lock of one app in one environment: a leased DynamoDB item.

    Use as a context manager; while held, a daemon thread renews the lease every third of it.
    """

    def __init__(
        self,
        aws: AWS,
        *,
        table: str,
        lock_id: str,
        lease_seconds: int = 900,
        owner: str | None = None,
        purpose: str = "",
    ) -> None:
        self.ddb = aws.client("dynamodb")
        self.table = table
        self.lock_id = lock_id
        self.lease = lease_seconds
        self.owner = owner or f"{identity()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.purpose = purpose
        self.held = False
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.renewals = 0

    def ensure_table(self) -> None:
        """Create the lock table (on-demand) the first time anyone locks in this account."""
        try:
            self.ddb.describe_table(TableName=self.table)
            return
        except AWSError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
        log.info("creating the deploy lock table %s", self.table)
        try:
            self.ddb.create_table(
                TableName=self.table,
                AttributeDefinitions=[{"AttributeName": "lock_id", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "lock_id", "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except AWSError as exc:
            if error_code(exc) != "ResourceInUseException":  # someone else just made it
                raise
        self.ddb.get_waiter("table_exists").wait(
            TableName=self.table, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )

    def holder(self) -> dict[str, Any] | None:
        item = self.ddb.get_item(
            TableName=self.table, Key={"lock_id": {"S": self.lock_id}}, ConsistentRead=True
        ).get("Item")
        return _plain(item) if item else None

    def acquire(self) -> None:
        """Take the lock or raise Refused naming who holds it and since when."""
        self.ensure_table()
        t = time.time()
        item = {
            "lock_id": {"S": self.lock_id},
            "owner": {"S": self.owner},
            "since": {"S": iso(now())},
            "expires_at": {"N": str(int(t + self.lease))},
            "purpose": {"S": self.purpose or "deploy"},
        }
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(lock_id) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(int(t))}},
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
                f"'baker unlock -e ENV --force'",
                details={"lock": held},
            ) from exc
        self.held = True
        log.debug("deploy lock %s taken by %s", self.lock_id, self.owner)

    def renew(self) -> bool:
        """Extend the lease if we still own the lock; False when it was taken from us."""
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key={"lock_id": {"S": self.lock_id}},
                UpdateExpression="SET expires_at = :exp",
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={
                    ":exp": {"N": str(int(time.time() + self.lease))},
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
        interval = max(self.lease / 3, 5)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    return
            except AWSError as exc:  # keep trying: the lease still has two thirds left
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
                TableName=self.table,
                Key={"lock_id": {"S": self.lock_id}},
                ConditionExpression="#o = :me",
                ExpressionAttributeNames={"#o": "owner"},
                ExpressionAttributeValues={":me": {"S": self.owner}},
            )
        except AWSError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            log.warning("deploy lock %s was no longer ours; left it alone", self.lock_id)
        self.held = False

    def force_release(self) -> dict[str, Any] | None:
        """Break the lock whoever holds it; returns what it was (None when it was free)."""
        self.ensure_table()
        resp = self.ddb.delete_item(
            TableName=self.table, Key={"lock_id": {"S": self.lock_id}}, ReturnValues="ALL_OLD"
        )
        old = resp.get("Attributes")
        return _plain(old) if old else None

    def __enter__(self) -> Lock:
        self.acquire()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name=f"lock-{self.lock_id}", daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in item.items():
        if "S" in value:
            out[key] = value["S"]
        elif "N" in value:
            num = value["N"]
            out[key] = int(num) if num.lstrip("-").isdigit() else float(num)
        else:
            out[key] = next(iter(value.values()), None)
    return out


def lock_for(aws: AWS, *, table: str, app: str, env: str, lease_seconds: int, purpose: str = "") -> Lock:
    """The deploy lock of ``app`` in ``env``."""
    return Lock(aws, table=table, lock_id=f"{app}/{env}", lease_seconds=lease_seconds, purpose=purpose)
