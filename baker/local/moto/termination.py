"""Groups and target groups stay in step on termination (gap 3).

moto leaves terminated instances registered and ``healthy`` (TerminateInstanceInAutoScalingGroup,
scale-in), and never registers the replacements a group launches after an EC2 TerminateInstances.
AWS: instances an Auto Scaling group terminates are deregistered from its target groups, and the
instances it launches are registered with them (Amazon EC2 Auto Scaling User Guide, "Use Elastic
Load Balancing to distribute incoming application traffic in your Auto Scaling group").
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """Every termination leaves the target groups; every replacement joins them (gap 3)."""
    from moto.autoscaling.models import AutoScalingBackend
    from moto.ec2.models.instances import InstanceBackend

    original_terminate = InstanceBackend.terminate_instances

    def terminate_instances(self: Any, instance_ids: list[str]) -> Any:
        result = original_terminate(self, instance_ids)
        from moto.elbv2 import elbv2_backends

        elbv2_backends[self.account_id][self.region_name].notify_terminate_instances(list(instance_ids))
        return result

    InstanceBackend.terminate_instances = terminate_instances  # type: ignore[method-assign]

    original_notify = AutoScalingBackend.notify_terminate_instances

    def notify_terminate_instances(self: Any, instance_ids: list[str]) -> None:
        original_notify(self, instance_ids)
        for name in list(self.autoscaling_groups):
            self.update_attached_target_groups(name)

    AutoScalingBackend.notify_terminate_instances = notify_terminate_instances  # type: ignore[method-assign]
