"""The one policy gate: every verb that changes what an environment runs asks it first.

Rules (DESIGN.md, "Policy"), each a refusal (exit 6) that names the rule, the file and key that
set it, and what to do; a refusal changes nothing:

| rule             | verbs refused                               | set by                          |
|------------------|---------------------------------------------|---------------------------------|
| pinned           | deploy, release, promote, rollback          | ``baker pin`` (the state table) |
| protected        | deploy, release                             | ``protected: true``             |
| promote_from     | promote from any other environment          | ``promote_from: ENV``           |
| require_verified | any verb, for an AMI without baker:verified | ``require_verified: true``      |
| min_soak         | promote of an AMI live in the source less   | ``promotion.min_soak``          |
|                  | than that long                              |                                 |
| revoked          | any verb, for an AMI tagged baker:revoked   | ``baker revoke`` (the AMI's tag)|
|                  | (itself, or as a copy or child of one)      |                                 |

The pin is checked twice by the verbs: once before anything starts, and again after the deploy
lock is taken (someone may have pinned in between).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from baker import provenance
from baker.config import Environment
from baker.errors import Refused
from baker.images import Image
from baker.ledger import Ledger, Release
from baker.provenance import parse_iso, utc_now

VERBS = ("deploy", "release", "promote", "pin", "rollback")
PIN_REFUSES = ("deploy", "release", "promote", "rollback")
PROTECTED_REFUSES = ("deploy", "release")


@dataclass(frozen=True)
class Change:
    """What a verb is about to do to an environment."""

    verb: str
    #: None before a bake (the AMI is not known yet)
    image: Image | None
    #: promote: the source environment and its release of the image
    source_env: str | None = None
    source_release: Release | None = None


class Gate:
    """The policy of one environment, with its ledger (for the pin)."""

    def __init__(self, env: Environment, ledger: Ledger, *, clock: Any = utc_now) -> None:
        self.env = env
        self.ledger = ledger
        self.clock = clock

    def check(self, change: Change) -> None:
        """Raise Refused when a rule forbids the change; return when every rule allows it."""
        if change.verb not in VERBS:
            raise ValueError(f"unknown verb {change.verb!r}")
        self._revoked(change)
        self.check_pin(change)
        self._protected(change)
        self._promote_from(change)
        self._verified(change)
        self._soak(change)

    def check_before_bake(self, verb: str) -> None:
        """The rules that need no AMI (pin, protected): a release is refused before it bakes."""
        change = Change(verb=verb, image=None)
        self.check_pin(change)
        self._protected(change)

    def check_pin(self, change: Change) -> None:
        if change.verb not in PIN_REFUSES:
            return
        pin = self.ledger.pin()
        if pin is None:
            return
        name = self.env.name
        self._refuse(
            change,
            "pinned",
            f"{name} is pinned to {pin.get('ami_id')} by {pin.get('by')} at {pin.get('at')}: "
            f"{pin.get('reason')!r}. Nothing is deployed into a pinned environment; "
            f"'baker unpin -e {name}' lifts the pin",
            where=f"the pin of {name} in the state table {self.ledger.table.name}",
            extra={"pinned": pin},
        )

    def _revoked(self, change: Change) -> None:
        revoked = change.image.revoked if change.image is not None else None
        if revoked is None:
            return
        assert change.image is not None
        root = revoked.get("root") or change.image.id
        via = f" (a copy or child of {root})" if root != change.image.id else ""
        self._refuse(
            change,
            "revoked",
            f"{change.image.id}{via} was revoked by {revoked['by']} at {revoked['at']}: "
            f"{revoked['reason']!r}. No {change.verb} takes a revoked AMI; "
            f"'baker unrevoke --ami {root}' lifts it",
            where=f"the {provenance.REVOKED} tag of {change.image.id}",
            extra={"revoked": {**revoked, "ami_id": change.image.id}},
        )

    def _protected(self, change: Change) -> None:
        s = self.env.settings
        if not s.protected or change.verb not in PROTECTED_REFUSES:
            return
        source = s.promote_from or "ENV"
        self._refuse(
            change,
            "protected",
            f"{self.env.name} is protected: no direct {change.verb}; changes arrive by "
            f"'baker promote --from {source} --to {self.env.name}', 'baker rollback -e {self.env.name}' "
            f"or 'baker pin -e {self.env.name}'",
            key="protected",
        )

    def _promote_from(self, change: Change) -> None:
        allowed = self.env.settings.promote_from
        if change.verb != "promote" or allowed is None or change.source_env == allowed:
            return
        self._refuse(
            change,
            "promote_from",
            f"{self.env.name} takes promotions only from {allowed}, not {change.source_env}: "
            f"'baker promote --from {allowed} --to {self.env.name}'",
            key="promote_from",
        )

    def _verified(self, change: Change) -> None:
        if not self.env.settings.require_verified or change.image is None or change.image.verified:
            return
        self._refuse(
            change,
            "require_verified",
            f"{self.env.name} requires verified AMIs and {change.image.id} has no valid baker:verified "
            f"tag; verify it first: 'baker verify -e {change.source_env or self.env.name} "
            f"--ami {change.image.id}'",
            key="require_verified",
        )

    def _soak(self, change: Change) -> None:
        need = self.env.settings.promotion.min_soak
        if change.verb != "promote" or not need or change.image is None:
            return
        release = change.source_release
        since = parse_iso(release.healthy_at or release.at) if release else None
        soaked = (self.clock() - since).total_seconds() if since else 0.0
        if since is not None and soaked >= need:
            return
        self._refuse(
            change,
            "min_soak",
            f"{change.image.id} has been healthy in {change.source_env} for {_span(soaked)}; {self.env.name} "
            f"needs {_span(need)} (promotion.min_soak): promote it later",
            key="promotion.min_soak",
            extra={"soaked_seconds": int(soaked), "min_soak_seconds": need},
        )

    def _refuse(
        self,
        change: Change,
        rule: str,
        message: str,
        *,
        key: str | None = None,
        where: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        origin = str(self.env.origin(*key.split("."))) if key else None
        said = f" ({origin}: {key})" if key else f" ({where})" if where else ""
        raise Refused(
            f"refused by policy [{rule}]: {message}{said}",
            details={
                "outcome": "refused",
                "rule": rule,
                "env": self.env.name,
                "ami_id": change.image.id if change.image else None,
                "file": origin,
                "key": key,
                **(extra or {}),
            },
        )


def _span(seconds: float) -> str:
    delta = dt.timedelta(seconds=int(seconds))
    return str(delta)
