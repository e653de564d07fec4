"""What the fleet of an environment runs now, read from Terraform's outputs and AWS."""

from __future__ import annotations

import logging
from collections.abc import Callable

from baker import fleet
from baker.aws import AWS
from baker.deploy.handoff import Handoff
from baker.errors import BakerError
from baker.health import Watch

log = logging.getLogger("baker")


class LiveView:
    def __init__(self, aws: AWS, handoff: Handoff, watch: Callable[[str, str], Watch]) -> None:
        self.aws = aws
        self.handoff = handoff
        self.watch = watch

    def ami(self) -> str | None:
        """The AMI most in-service instances of the fleet run (the launch template's when none
        is in service); None before the first apply."""
        out = self.handoff.outputs()
        if not out.get("asg_name"):
            return None
        try:
            found = fleet.read(self.aws, out["asg_name"])
        except BakerError as exc:
            log.warning("cannot read the fleet: %s", exc.message)
            return out.get("image_id")
        return found.most_run or out.get("image_id")

    def words(self) -> str:
        """What runs, in words: launch template version and image, instances per AMI, refresh."""
        out = self.handoff.outputs()
        if not out.get("asg_name"):
            return "nothing (no fleet yet)"
        try:
            state = self.watch(out["asg_name"], out["target_group_arn"]).look(str(out.get("image_id") or ""))
        except BakerError as exc:
            return f"unknown ({exc.message})"
        template = (
            f"launch template {out.get('launch_template_id')} version {out.get('launch_template_version')} "
            f"on {out.get('image_id')}"
        )
        refresh = f"; refresh {state.refresh_status}" if state.refresh_status else ""
        return f"{template}; {state.live()}{refresh}"
