"""pin and unpin: freeze an environment on a known AMI (the 3 a.m. verb), and thaw it.

``pin`` deploys the AMI under the lock with the full health gate and writes the pin only once the
fleet is healthy on it; a pin that does not get healthy is rolled back and not written (exit 4).
It restores the runtime values of the newest healthy release of that AMI in the environment when
there is one (the state that was known to work), else the environment's current ``runtime:``.
While pinned, every deploy, release, promote and rollback into the environment is refused.
"""

from __future__ import annotations

import logging
from typing import Any

from baker import provenance
from baker.deploy import Deploy, Options
from baker.errors import UsageError
from baker.ledger import Release

log = logging.getLogger("baker")


class Pin:
    def __init__(self, deploy: Deploy) -> None:
        self.deploy = deploy
        self.ledger = deploy.ledger
        self.env = deploy.env

    def pin(
        self, ami_id: str, *, reason: str, options: Options | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        if not reason.strip():
            raise UsageError("pin needs a --reason: who reads the pin at 3 a.m. must know why")
        app = self.deploy.app
        image = self.deploy.image(ami_id)
        if image.app != app:
            raise UsageError(
                f"{ami_id} is not an AMI of {app} (its {provenance.APP} tag is {image.app!r}); "
                "pin takes one of the app's AMIs",
                details={"ami_id": ami_id},
            )
        known = self.ledger.healthy_on(ami_id)
        warnings = []
        if known is None:
            warnings.append(f"{ami_id} was never healthy in {self.env.name}")
            log.warning("%s: pinning it behind the health gate", warnings[-1])
        runtime = known.runtime if known is not None else None

        def write_pin(release: Release) -> dict[str, Any]:
            return {"pinned": self.ledger.set_pin(ami_id, reason=reason, by=release.by)}

        result = self.deploy.run(
            ami_id,
            kind="pin",
            runtime=runtime,
            options=options,
            dry_run=dry_run,
            on_healthy=write_pin,
            pin_reason=reason,
        )
        if warnings:
            result["warnings"] = warnings
        return result

    def unpin(self) -> dict[str, Any]:
        was = self.ledger.pin()
        if was is None:
            return {"env": self.env.name, "kind": "unpin", "ami_id": None, "unpinned": None, "outcome": None}
        # what runs stays as it is: the pinned AMI ran before the unpin; the row says so, as the result does
        release = self.ledger.new(
            "unpin",
            was.get("ami_id"),
            previous_ami_id=was.get("ami_id"),
            outcome="done",
            pin_reason=was.get("reason"),
        )
        self.ledger.write(release)
        self.ledger.clear_pin()
        return {
            "env": self.env.name,
            "kind": "unpin",
            "ami_id": was.get("ami_id"),
            "previous_ami_id": was.get("ami_id"),
            "unpinned": was,
            "outcome": "done",
            "release_id": release.id,
        }
