"""``baker rollback -e ENV [--to AMI]``: back to a good release, its AMI *and* its runtime
configuration, as a deploy of kind ``rollback`` (same lock, gate, ledger and health wait).
Re-applying today's broken runtime configuration with the old AMI would not be a rollback, so
the target's recorded runtime is what goes out. The automatic rollback after a failed deploy is
baker/deploy/recovery.py.
"""

from __future__ import annotations

import logging
from typing import Any

from baker.deploy.recovery import Options
from baker.deploy.run import Deploy
from baker.errors import UsageError
from baker.ledger import Release

log = logging.getLogger("baker")


class Rollback:
    def __init__(self, deploy: Deploy) -> None:
        self.deploy = deploy
        self.ledger = deploy.ledger
        self.env = deploy.env

    def target(self, *, to: str | None = None, exclude: str | None = None) -> Release:
        """The release to go back to: the newest healthy one on another AMI than ``exclude``, or
        the newest healthy release of ``to`` (which must have been healthy here before)."""
        if to is not None:
            found = self.ledger.healthy_on(to)
            if found is None:
                raise UsageError(
                    f"{to} was never healthy in {self.env.name}: rollback --to takes an AMI of an earlier "
                    f"healthy release (see 'baker history -e {self.env.name}')",
                    details={"ami_id": to, "env": self.env.name},
                )
            return found
        found = self.ledger.last_good(exclude_ami=exclude)
        if found is None:
            raise UsageError(
                f"{self.env.name} has no earlier healthy release on another AMI than {exclude} "
                "to roll back to",
                details={"env": self.env.name},
            )
        return found

    def run(
        self, *, to: str | None = None, options: Options | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """``baker rollback``: deploy the previous good release (or ``to``), kind ``rollback``."""
        live = self.ledger.live()
        target = self.target(to=to, exclude=None if to else (live.ami_id if live else None))
        assert target.ami_id is not None
        log.info(
            "rolling %s back to %s (release %s of %s)", self.env.name, target.ami_id, target.id, target.at
        )
        result = self.deploy.run(
            target.ami_id, kind="rollback", runtime=target.runtime, options=options, dry_run=dry_run
        )
        result["rollback_to_release"] = target.id
        return result
