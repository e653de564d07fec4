"""One home for the fleet: an environment's Auto Scaling group, the launch template versions it
launches from, its instances and their AMIs, its instance refreshes, as AWS has them.

status (drift), gc (what fleets launch), the deploy (what the fleet runs before a release) and
the health wait all read the fleet through these functions, so they agree on what a group
launches from and which AMI an instance runs. Terraform's outputs are not read here: this is
what AWS says, whatever Terraform last applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from baker.aws import AWS, Client

#: EC2 accepts at most this many values in one filter
FILTER_VALUES = 200


@dataclass(frozen=True)
class Fleet:
    """What AWS says about one environment's fleet (all None/empty when the group is gone)."""

    asg_name: str
    found: bool = False
    launch_template_id: str | None = None
    #: the version the group launches from, as the group names it, and its AMI
    group_version: str | None = None
    group_ami_id: str | None = None
    default_version: str | None = None
    default_ami_id: str | None = None
    desired: int = 0
    #: in-service instances per AMI
    instances: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "asg_name": self.asg_name,
            "found": self.found,
            "launch_template_id": self.launch_template_id,
            "launch_template_version": self.group_version,
            "launch_template_ami_id": self.group_ami_id,
            "default_version": self.default_version,
            "default_version_ami_id": self.default_ami_id,
            "desired": self.desired,
            "in_service": self.instances,
        }

    @property
    def most_run(self) -> str | None:
        """The AMI most in-service instances run (None when none is in service)."""
        return max(self.instances, key=lambda a: self.instances[a]) if self.instances else None


def group(autoscaling: Client, asg_name: str) -> dict[str, Any] | None:
    """The Auto Scaling group as DescribeAutoScalingGroups has it; None when it is gone."""
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[asg_name]).get(
        "AutoScalingGroups"
    )
    return groups[0] if groups else None


def refreshes(autoscaling: Client, asg_name: str) -> list[dict[str, Any]]:
    """The group's newest instance refreshes (ten: more than one rollout ever needs)."""
    return autoscaling.describe_instance_refreshes(AutoScalingGroupName=asg_name, MaxRecords=10).get(
        "InstanceRefreshes", []
    )


def template_spec(group: Mapping[str, Any]) -> dict[str, Any]:
    """The launch template specification the group launches its instances from."""
    return dict(
        group.get("LaunchTemplate")
        or ((group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}).get(
            "LaunchTemplateSpecification"
        )
        or {}
    )


def template_specs(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every launch template specification of a group: its own, its mixed instances policy's and
    that policy's overrides (each may launch instances)."""
    mixed = (group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate") or {}
    specs = [group.get("LaunchTemplate") or {}, mixed.get("LaunchTemplateSpecification") or {}]
    specs += [o.get("LaunchTemplateSpecification") or {} for o in mixed.get("Overrides", [])]
    return specs


def template_key(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """How to ask EC2 for a specification's template: by id, else by name."""
    if spec.get("LaunchTemplateId"):
        return ("LaunchTemplateId", spec["LaunchTemplateId"])
    if spec.get("LaunchTemplateName"):
        return ("LaunchTemplateName", spec["LaunchTemplateName"])
    return None


def instance_images(ec2: Client, instance_ids: Iterable[str]) -> dict[str, str]:
    """Instance id -> the AMI it runs. One call per 200 instances (EC2's limit of values per
    filter); a filter, not InstanceIds, so that an instance already gone does not fail the call."""
    ids = sorted(set(instance_ids))
    images: dict[str, str] = {}
    for start in range(0, len(ids), FILTER_VALUES):
        resp = ec2.describe_instances(
            Filters=[{"Name": "instance-id", "Values": ids[start : start + FILTER_VALUES]}]
        )
        for res in resp.get("Reservations", []):
            for inst in res.get("Instances", []):
                images[inst["InstanceId"]] = inst.get("ImageId", "")
    return images


def read(aws: AWS, asg_name: str) -> Fleet:
    """The group, its launch template's two versions and its instances' AMIs: three kinds of call."""
    found = group(aws.client("autoscaling"), asg_name)
    if found is None:
        return Fleet(asg_name=asg_name)
    spec = template_spec(found)
    ec2 = aws.client("ec2")
    template_id = spec.get("LaunchTemplateId")
    version = str(spec.get("Version") or "$Default")
    by_version: dict[str, str | None] = {}
    default_version = None
    key = template_key(spec)
    if key is not None:
        ask: dict[str, Any] = {key[0]: key[1], "Versions": sorted({version, "$Default"})}
        for data in ec2.describe_launch_template_versions(**ask).get("LaunchTemplateVersions", []):
            template_id = data.get("LaunchTemplateId", template_id)
            number = str(data.get("VersionNumber"))
            by_version[number] = data.get("LaunchTemplateData", {}).get("ImageId")
            if data.get("DefaultVersion"):
                default_version = number
    group_version: str | None = version
    if version in ("$Default", "$Latest"):
        group_version = default_version if version == "$Default" else max(by_version, key=int, default=None)
    members = {i["InstanceId"]: i.get("LifecycleState") for i in found.get("Instances", [])}
    images = instance_images(ec2, members)
    in_service: dict[str, int] = {}
    for iid, lifecycle in members.items():
        if lifecycle == "InService":
            ami = images.get(iid) or "?"
            in_service[ami] = in_service.get(ami, 0) + 1
    return Fleet(
        asg_name=asg_name,
        found=True,
        launch_template_id=template_id,
        group_version=group_version,
        group_ami_id=by_version.get(group_version or ""),
        default_version=default_version,
        default_ami_id=by_version.get(default_version or ""),
        desired=int(found.get("DesiredCapacity") or 0),
        instances=in_service,
    )
