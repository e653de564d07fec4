"""Which resources use an image: ``DescribeImageReferences`` (gap 17).

moto 5.2.5 answers the call with HTTP 500 (not implemented). AWS (Amazon EC2 API Reference,
"DescribeImageReferences", "ResourceTypeRequest", "ResourceTypeOption", "ImageReference"): the
caller's resources in the region that reference any of ``ImageIds``, each an ``ImageId``, a
``ResourceType`` and the resource's ``Arn``:

- ``ec2:Instance``: instances launched from the image, in every state unless the ``state-name``
  option names some;
- ``ec2:LaunchTemplate``: launch templates whose versions name the image, checking the newest
  ``version-depth`` versions (default 10, at most 10000).

``IncludeAllResourceTypes`` (or no ``ResourceTypes``) asks for every type. SSM parameters and
Image Builder recipes are not emulated (the local cloud has neither); the answer is one page.
"""

from __future__ import annotations

from typing import Any

DEFAULT_VERSION_DEPTH = 10
TYPES = ("ec2:Instance", "ec2:LaunchTemplate")


def options(requested: list[dict[str, Any]], include_all: bool) -> dict[str, dict[str, list[str]]]:
    """Resource type -> option name -> values, for the types asked about (pure)."""
    if include_all or not requested:
        chosen: dict[str, dict[str, list[str]]] = {t: {} for t in TYPES}
    else:
        chosen = {}
    for item in requested:
        kind = item.get("ResourceType")
        if kind not in TYPES:
            continue
        opts = chosen.setdefault(str(kind), {})
        for option in item.get("ResourceTypeOptions") or []:
            opts[str(option.get("OptionName"))] = [str(v) for v in option.get("OptionValues") or []]
    return chosen


def install() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.responses.amis import AmisResponse

    def describe_image_references(self: Any) -> ActionResult:
        self.error_on_dryrun()
        ids = set(self._get_param("ImageIds", []) or [])
        if not ids:
            raise EC2ClientError("MissingParameter", "The request must contain the parameter ImageIds")
        chosen = options(
            self._get_param("ResourceTypes", []) or [],
            bool(self._get_bool_param("IncludeAllResourceTypes", False)),
        )
        backend = self.ec2_backend
        arn = f"arn:aws:ec2:{backend.region_name}:{backend.account_id}"
        found: list[dict[str, str]] = []
        if "ec2:Instance" in chosen:
            states = set(chosen["ec2:Instance"].get("state-name") or [])
            for instance in backend.all_instances():
                if instance.image_id in ids and (not states or instance.state in states):
                    found.append(
                        {
                            "ImageId": instance.image_id,
                            "ResourceType": "ec2:Instance",
                            "Arn": f"{arn}:instance/{instance.id}",
                        }
                    )
        if "ec2:LaunchTemplate" in chosen:
            depth_values = chosen["ec2:LaunchTemplate"].get("version-depth") or []
            depth = int(depth_values[0]) if depth_values else DEFAULT_VERSION_DEPTH
            for template in list(backend.launch_templates.values()):
                named = {v.image_id for v in template.versions[-depth:]} & ids
                for image in sorted(named):
                    found.append(
                        {
                            "ImageId": image,
                            "ResourceType": "ec2:LaunchTemplate",
                            "Arn": f"{arn}:launch-template/{template.id}",
                        }
                    )
        return ActionResult({"ImageReferences": found})

    AmisResponse.describe_image_references = describe_image_references  # type: ignore[attr-defined]
