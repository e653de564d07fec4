"""An image's lifecycle: deprecation, disable/enable, deregistration protection, last launch (gap 16).

moto 5.2.5 has ``DisableImage``/``EnableImage`` (the state becomes ``disabled``), but a disabled
image still launches and is listed like any other, and it has no deprecation, no deregistration
protection and no ``LastLaunchedTime``. AWS (Amazon EC2 API Reference):

- "EnableImageDeprecation" / "DisableImageDeprecation": ``DeprecateAt`` sets the image's
  ``DeprecationTime`` (DescribeImages), which the disable call removes. "DescribeImages",
  ``IncludeDeprecated``: "No deprecated AMIs are included in the response. If you are the AMI
  owner, all deprecated AMIs appear in the response regardless".
- "DisableImage": "A disabled AMI can't be used for instance launches" (RunInstances fails with
  ``InvalidAMIID.Unavailable``, as for any image that is not available) and "does not appear in
  DescribeImages API calls by default" (``IncludeDisabled``); its launch permissions are removed.
- "EnableImageDeregistrationProtection" / "DisableImageDeregistrationProtection": "When
  deregistration protection is enabled, the AMI can't be deregistered"; DescribeImages says
  ``DeregistrationProtection`` (``enabled``, ``enabled-with-cooldown``, ``disabled``).
  DeregisterImage of a protected image fails with ``OperationNotPermitted``.
- "Image", ``LastLaunchedTime``: "The date and time, in ISO 8601 date-time format, when the AMI
  was last used to launch an EC2 instance" (set here by every launch, Auto Scaling's too).

The cooldown of ``WithCooldown`` is recorded in the answer, not enforced.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from baker.local.moto.state import utcnow


def _iso(when: Any) -> str:
    return str(when.strftime("%Y-%m-%dT%H:%M:%S.000Z"))


def deprecate_at(text: str) -> str:
    """``DeprecateAt`` as DescribeImages says it: UTC, seconds rounded to the nearest minute (AWS)."""
    when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    when = when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when
    when = (when + dt.timedelta(seconds=30)).replace(second=0, microsecond=0)
    return _iso(when)


def install() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError, InvalidAMIIdError
    from moto.ec2.models.amis import Ami, AmiBackend
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.responses.amis import AmisResponse

    # what DescribeImages serializes (attributes of the image, by name), absent until set
    Ami.deprecation_time = None  # type: ignore[attr-defined]
    Ami.deregistration_protection = "disabled"  # type: ignore[attr-defined]
    Ami.last_launched_time = None  # type: ignore[attr-defined]

    def owned(backend: Any, ami_id: str) -> Any:
        ami = backend.amis.get(ami_id)
        if ami is None:
            raise InvalidAMIIdError(ami_id)
        return ami

    def answer(self: Any, change: Any) -> ActionResult:
        self.error_on_dryrun()
        change(owned(self.ec2_backend, self._get_param("ImageId")))
        return ActionResult({"Return": True})

    def enable_image_deprecation(self: Any) -> ActionResult:
        at = deprecate_at(self._get_param("DeprecateAt"))
        return answer(self, lambda ami: setattr(ami, "deprecation_time", at))

    def disable_image_deprecation(self: Any) -> ActionResult:
        return answer(self, lambda ami: setattr(ami, "deprecation_time", None))

    def enable_image_deregistration_protection(self: Any) -> ActionResult:
        mode = "enabled-with-cooldown" if self._get_bool_param("WithCooldown") else "enabled"
        return answer(self, lambda ami: setattr(ami, "deregistration_protection", mode))

    def disable_image_deregistration_protection(self: Any) -> ActionResult:
        return answer(self, lambda ami: setattr(ami, "deregistration_protection", "disabled"))

    AmisResponse.enable_image_deprecation = enable_image_deprecation  # type: ignore[attr-defined]
    AmisResponse.disable_image_deprecation = disable_image_deprecation  # type: ignore[attr-defined]
    AmisResponse.enable_image_deregistration_protection = enable_image_deregistration_protection  # type: ignore[attr-defined]
    AmisResponse.disable_image_deregistration_protection = disable_image_deregistration_protection  # type: ignore[attr-defined]

    original_describe = AmisResponse.describe_images

    def describe_images(self: Any) -> ActionResult:
        """Disabled images only with IncludeDisabled; deprecated ones of others only with
        IncludeDeprecated (moto ignores both)."""
        result = original_describe(self)
        include_disabled = self._get_bool_param("IncludeDisabled", False)
        include_deprecated = self._get_bool_param("IncludeDeprecated", False)
        account = self.current_account
        now = _iso(utcnow())

        def shown(ami: Any) -> bool:
            if ami.state == "disabled" and not include_disabled:
                return False
            deprecated = ami.deprecation_time is not None and str(ami.deprecation_time) <= now
            return not deprecated or include_deprecated or ami.owner_id == account

        body: dict[str, Any] = result.result  # type: ignore[assignment]
        body["Images"] = [ami for ami in body["Images"] if shown(ami)]
        return result

    AmisResponse.describe_images = describe_images  # type: ignore[method-assign]

    original_disable = AmiBackend.disable_image

    def disable_image(self: Any, ami_id: str) -> None:
        original_disable(self, ami_id)
        self.amis[ami_id].launch_permissions = []  # AWS: a disabled AMI is made private

    AmiBackend.disable_image = disable_image  # type: ignore[method-assign]

    original_deregister = AmiBackend.deregister_image

    def deregister_image(self: Any, ami_id: str) -> None:
        ami = self.amis.get(ami_id)
        if ami is not None and ami.deregistration_protection != "disabled":
            raise EC2ClientError(
                "OperationNotPermitted",
                f"The image {ami_id} has deregistration protection enabled; disable it with "
                "DisableImageDeregistrationProtection first",
            )
        original_deregister(self, ami_id)

    AmiBackend.deregister_image = deregister_image  # type: ignore[method-assign]

    original_run = InstanceBackend.run_instances

    def run_instances(self: Any, image_id: str, count: int, *args: Any, **kwargs: Any) -> Any:
        ami = self.amis.get(image_id) if image_id else None
        if ami is not None and ami.state == "disabled":
            raise EC2ClientError(
                "InvalidAMIID.Unavailable", f"The image id '[{image_id}]' is disabled and cannot be launched"
            )
        reservation = original_run(self, image_id, count, *args, **kwargs)
        launched = image_id or next((i.image_id for i in reservation.instances), None)
        if launched and launched in self.amis:
            self.amis[launched].last_launched_time = _iso(utcnow())
        return reservation

    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]
