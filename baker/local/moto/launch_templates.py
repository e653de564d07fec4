"""Launch templates as EC2 keeps them (gaps 4, 5 and 6).

4. ``CreateLaunchTemplateVersion`` stores UserData as a plain string (the provider always sends
   ``UserData=""``), so any group launch from version >= 2 crashes with an AssertionError (HTTP
   500). AWS stores it base64-encoded (Amazon EC2 API Reference, "RequestLaunchTemplateData").
5. ``CreateLaunchTemplate`` copies the template's own tags (``ResourceType=launch-template``) into
   version 1's data, so every Terraform plan after the create shows a diff. AWS: those tags belong
   to the template, not to the instances it launches ("CreateLaunchTemplate", TagSpecifications).
6. The group reports every instance as launched from the template's current default version. AWS:
   each instance reports the version it really came from (Amazon EC2 Auto Scaling API Reference,
   "Instance", LaunchTemplate).
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    from moto.autoscaling.models import FakeAutoScalingGroup, InstanceState
    from moto.core.types import Base64EncodedString
    from moto.ec2.models.launch_templates import LaunchTemplate, LaunchTemplateBackend
    from moto.ec2.utils import parse_user_data

    original_create_version = LaunchTemplate.create_version

    def create_version(self: Any, data: dict[str, Any], description: str) -> Any:
        user_data = data.get("UserData")
        if user_data is not None and not isinstance(user_data, Base64EncodedString):
            data = dict(data, UserData=parse_user_data(user_data))  # gap 4
        return original_create_version(self, data, description)

    LaunchTemplate.create_version = create_version  # type: ignore[method-assign]

    original_create = LaunchTemplateBackend.create_launch_template

    def create_launch_template(
        self: Any, name: str, description: str, template_data: dict[str, Any], tag_spec: dict[str, Any]
    ) -> Any:
        specs = template_data.get("TagSpecifications")
        if specs:  # gap 5: the template's own tags are not part of its data
            kept = [s for s in specs if s.get("ResourceType") != "launch-template"]
            template_data = dict(template_data)
            if kept:
                template_data["TagSpecifications"] = kept
            else:
                template_data.pop("TagSpecifications")
        return original_create(self, name, description, template_data, tag_spec)

    LaunchTemplateBackend.create_launch_template = create_launch_template  # type: ignore[method-assign]

    original_replace = FakeAutoScalingGroup.replace_autoscaling_group_instances

    def replace_autoscaling_group_instances(self: Any, count_needed: int, propagated_tags: dict) -> None:
        before = {s.instance.id for s in self.instance_states}
        version = None
        if self.ec2_launch_template is not None:
            version = self.ec2_launch_template.get_version(self.launch_template_version).number
        original_replace(self, count_needed, propagated_tags)
        for state in self.instance_states:
            if state.instance.id not in before and version is not None:
                state.instance.baker_launch_template_version = str(version)  # gap 6

    FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances  # type: ignore[method-assign]

    original_lt = InstanceState.launch_template

    def launch_template(self: Any) -> dict[str, Any] | None:
        spec = original_lt.fget(self)  # type: ignore[attr-defined]
        version = getattr(self.instance, "baker_launch_template_version", None)
        if spec is not None and version is not None:
            spec = dict(spec, Version=version)
        return spec

    InstanceState.launch_template = property(launch_template)  # type: ignore[method-assign,assignment]
