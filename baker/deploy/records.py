"""The release records of one run: the intent before an apply, the outcome after, and what a run
that died or was interrupted left open."""

from __future__ import annotations

import logging
from collections.abc import Callable

from baker.errors import BakerError
from baker.ledger import Ledger, Lock, Release
from baker.provenance import iso, utc_now

log = logging.getLogger("baker")


class Records:
    def __init__(self, ledger: Ledger, live_words: Callable[[], str]) -> None:
        self.ledger = ledger
        self.live_words = live_words
        #: releases whose intent is written and whose outcome is not yet (closed on Ctrl-C)
        self.open: list[Release] = []

    def intent(self, release: Release) -> None:
        """Write the release as it stands (``in_progress``); it is open until ``close``."""
        self.ledger.write(release)
        if all(r.id != release.id for r in self.open):
            self.open.append(release)

    def close(self, release: Release) -> None:
        """Write a release's outcome; it is no longer open."""
        self.ledger.write(release)
        self.open = [r for r in self.open if r.id != release.id]

    def close_abandoned(self, lock: Lock) -> list[Release]:
        """Under the lock, a release still in_progress belongs to a run that died (its lease ran
        out, or the lock was broken): close it as abandoned, saying what is live."""
        stale = self.ledger.open()
        if not stale:
            return []
        live = self.live_words()
        holder = (lock.took_over or {}).get("owner")
        for release in stale:
            release.outcome = "abandoned"
            release.reason = (
                f"its run ended without an outcome{f' (lock holder {holder})' if holder else ''}; "
                f"closed by {lock.owner} at {iso(utc_now())}; live then: {live}"
            )
            self.ledger.write(release)
            log.warning(
                "release %s (%s of %s) was abandoned by a run that died; live: %s",
                release.id,
                release.kind,
                release.ami_id,
                live,
            )
        return stale

    def interrupt(self, reason: str) -> bool:
        """Close every open release as interrupted, with ``reason``; whether one was recorded."""
        recorded = False
        for rec in list(self.open):
            rec.outcome = "interrupted"
            rec.reason = reason
            try:
                self.close(rec)
                recorded = True
            except (BakerError, KeyboardInterrupt) as exc:
                log.error("could not record release %s as interrupted: %s", rec.id, exc)
        return recorded
