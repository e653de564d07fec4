"""Instances that boot their image (gap 13): moto's instances are records only.

AWS: RunInstances boots the AMI's root volume; StopInstances, StartInstances and
TerminateInstances act on the running machine; GetConsoleOutput returns the last 64 KB of its
console (Amazon EC2 API Reference, "GetConsoleOutput"); a launch past the account's limit fails
with ``InstanceLimitExceeded``.

Here an instance of an AMI baked in this local cloud boots it in a container of its own
(baker.local.instances); stop, start and terminate act on that container; a deregistered AMI loses
its content once its last instance is gone.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from baker.local.moto import state
from baker.local.moto.state import SETTINGS, is_live, utcnow


def _public_keys(backend: Any, key_name: str | None) -> list[str]:
    pair = backend.key_pairs.get(key_name) if key_name else None
    material = getattr(pair, "material_public", None)
    if not material:
        return []
    return [material.decode() if isinstance(material, bytes) else str(material)]


def _user_data(instance: Any) -> bytes | None:
    raw = getattr(instance, "user_data", None)
    if isinstance(raw, list):  # older moto: a list of one encoded string
        raw = raw[0] if raw else None
    if raw is None:
        return None
    text = raw.as_bytes() if hasattr(raw, "as_bytes") else raw
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return text if isinstance(text, bytes) else str(text).encode()


def install() -> None:
    """Instances of an AMI with content boot it; stop, start and terminate act on the container."""
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.amis import AmiBackend
    from moto.ec2.models.instances import Instance, InstanceBackend
    from moto.ec2.responses.general import General
    from moto.ec2.utils import Base64EncodedString

    from baker.local.instances import Image, InstanceLimit, hostname_for

    original_run = InstanceBackend.run_instances

    def run_instances(self: Any, image_id: str, count: int, *args: Any, **kwargs: Any) -> Any:
        disk = state.root_disk(self.amis.get(image_id))
        image = Image(image_id, disk) if disk is not None else None
        if image is not None:
            state.INSTANCES.max_live = SETTINGS.max_instances
            try:
                state.INSTANCES.check_room(int(count))
            except InstanceLimit as exc:
                raise EC2ClientError("InstanceLimitExceeded", exc.message) from exc
        reservation = original_run(self, image_id, count, *args, **kwargs)
        if image is not None:
            for instance in reservation.instances:
                instance.baker_live = True  # type: ignore[attr-defined]
                state.INSTANCES.launch(
                    instance.id,
                    image,
                    user_data=_user_data(instance),
                    hostname=hostname_for(getattr(instance, "private_ip", None), instance.id),
                    public_keys=_public_keys(self, getattr(instance, "key_name", None)),
                )
        return reservation

    InstanceBackend.run_instances = run_instances  # type: ignore[method-assign]

    def acting_on_container(name: str) -> Callable[..., Any]:
        original = getattr(Instance, name)

        def patched(self: Any) -> Any:
            was = self.state
            result = original(self)
            if is_live(self) and state.INSTANCES is not None and was != self.state:
                getattr(state.INSTANCES, name)(self.id)
            return result

        return patched

    for name in ("start", "stop", "terminate"):
        setattr(Instance, name, acting_on_container(name))

    original_console = General.get_console_output

    def get_console_output(self: Any) -> Any:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        if not is_live(instance) or state.INSTANCES is None:
            return original_console(self)
        raw = state.INSTANCES.console(instance.id).encode()[-64 * 1024 :]  # EC2 keeps the last 64 KB
        output = Base64EncodedString(base64.b64encode(raw).decode())
        result = {"InstanceId": instance.id, "Timestamp": utcnow(), "Output": output}
        return ActionResult(result)

    General.get_console_output = get_console_output  # type: ignore[method-assign]

    original_deregister = AmiBackend.deregister_image

    def deregister_image(self: Any, ami_id: str) -> None:
        original_deregister(self, ami_id)
        if state.INSTANCES is not None:
            state.INSTANCES.forget_image(ami_id)  # the image store follows the emulator

    AmiBackend.deregister_image = deregister_image  # type: ignore[method-assign]
