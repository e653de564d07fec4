"""Extensions to moto 5.2.5: what the emulator lacks and baker's pipeline needs.

Every gap below was measured against plain moto 5.2.5 in server mode (boto3 and the Terraform AWS
provider 5.100.0, inside a loopback-only namespace) before it was filled here:

1. Auto Scaling instance refresh is missing: ``StartInstanceRefresh``, ``DescribeInstanceRefreshes``,
   ``CancelInstanceRefresh`` and ``RollbackInstanceRefresh`` answer HTTP 500 (NotImplementedError);
   the provider retries the start for 15 minutes. Added: batches honouring Min/MaxHealthyPercentage,
   replacements launched from the version the refresh (or the group) asks for, registered with the
   group's target groups, old instances deregistered and terminated; Pending -> InProgress ->
   Successful / Failed / Cancelled (and the Rollback* states), advanced by a background thread.
   A batch whose replacements are not healthy within ``Settings.refresh_timeout`` fails the refresh.
   (The state machine and its API: baker.local.refresh.)
2. Target health cannot be driven: every registered target reports ``healthy`` forever. Now a live
   instance's target (baker.local.instances) reports what real checks inside the instance say
   (baker.local.health: initial, healthy, unhealthy, draining for the deregistration delay); an
   instance that is only a record reports ``initial`` for ``Settings.initial_seconds`` after its
   launch, then ``healthy``. The fault-injection override (``POST /_baker/health``) beats both: an
   AMI set to ``initial``, ``healthy`` or ``unhealthy`` reports that from the moment it is set.
   A group with health_check_type ELB replaces live instances unhealthy past the grace period.
3. Auto Scaling and target groups drift apart: terminated instances stay registered and ``healthy``
   (TerminateInstanceInAutoScalingGroup, scale-in) and the replacements the group launches after an
   EC2 TerminateInstances are never registered. Now every termination leaves the target groups and
   every replacement is registered.
4. ``CreateLaunchTemplateVersion`` stores UserData as a plain string (the provider always sends
   ``UserData=""``), so any group launch from version >= 2 crashes with an AssertionError (HTTP 500).
5. ``CreateLaunchTemplate`` copies the template's own tags into version 1's data, so every Terraform
   plan after the create shows a diff (and would start a refresh nobody asked for).
6. The group reports every instance as launched from the template's current default version; now each
   instance reports the version it really came from.
7. ``CopyImage`` ignores ``CopyImageTags`` and ``TagSpecifications`` (the copy has no tags), ignores
   ``Encrypted``/``KmsKeyId``, and the copy reports root device type ``standard`` on /dev/sda1
   whatever its source was. Now: tags as asked, EBS-backed like the source, encrypted when asked.
8. ``CreateImage`` with ``snapshot`` TagSpecifications answers HTTP 500 (NotImplementedError), and the
   image ignores the instance's root volume: always an unencrypted 15 GiB ``standard`` snapshot (an
   encrypted gp3 root, as Packer launches it, gives an unencrypted image). Now the image's root
   snapshot has the root volume's size, type, encryption and KMS key, and tagged snapshots.
9. No Debian source image: added ``debian-12-amd64-baker-local`` owned by 136693071363, public,
   EBS-backed (/dev/xvda with a snapshot), in every region of every account.
10. ``DescribeTrafficSources`` answers HTTP 500; now it lists the group's target groups.
11. One account only: moto reads an access key id only when it has 20 characters and maps it to an
    account only when IAM issued it, so every request lands in 123456789012 whatever the key. Now a
    12-digit access key id is the account id,
    and an image shared with an account (ModifyImageAttribute launch permission) is visible to it
    (DescribeImages by id, ExecutableUsers=self) and can be copied by it (CopyImage), as promotion
    between accounts needs.
12. Every EC2 resource finds its own tags by scanning every tag of the region (a regex per call),
    so DescribeImages and DescribeSnapshots over N tagged resources take O(N^2): 3,000 AMIs
    answer in 10 s, 10,000 outlast botocore's 60 s read timeout (gc's benchmark). Now a resource
    reads its own tags from the tag store by its id.

Not emulated (the pipeline does not need them): InstanceWarmup, CheckpointPercentages, BakeTime and
alarms of a refresh (recorded in Preferences, not waited on); an ELB-unhealthy instance that is only a
record is not replaced by the group; warm pools during a refresh.

13. Instances are records only. Now an instance of an AMI baked in this local cloud boots it
    (baker.local.instances); stop, start and terminate act on its container; a deregistered AMI
    loses its content; GetConsoleOutput answers the container's console (cloud-init prints the
    SSH host keys there, as on EC2). Each ALB HTTP listener answers on loopback (baker.local.lb).
14. A copied image is ``available`` at once. With ``Settings.copy_seconds`` it stays ``pending``
    that long, as EC2 keeps a copy while its snapshots copy (the promotion benchmark measures
    whether copies to several regions run concurrently).
15. CloudWatch has no load balancer metrics, and GetMetricStatistics matches any datapoint whose
    dimensions include the asked ones (AWS: exactly the asked set). Now the answers the local load
    balancers relay or make are ``AWS/ApplicationELB`` metrics (``HTTPCode_Target_5XX_Count`` per
    target group, ``HTTPCode_ELB_5XX_Count``, ...), matched exactly (baker.local.metrics).

The emulator's own endpoints (``/_baker/...``) are in baker.local.api. ``install()`` applies all of
it once per process, before the server starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baker.local.health import REASONS, Check, HealthChecker
from baker.local.lb import LoadBalancers, Target

log = logging.getLogger("baker")

SOURCE_AMI_NAME = "debian-12-amd64-baker-local"
SOURCE_AMI_OWNER = "136693071363"
HEALTH_STATES = ("initial", "healthy", "unhealthy")


@dataclass
class Settings:
    """Knobs of the emulator, changed at runtime through ``/_baker/...``."""

    #: seconds a fresh target reports ``initial`` before its real state
    initial_seconds: float = 3.0
    #: seconds a refresh batch may stay unhealthy before the refresh fails
    refresh_timeout: float = 30.0
    #: how often the refresh thread advances refreshes
    tick_seconds: float = 0.5
    #: AMI id -> forced target state
    health_by_ami: dict[str, str] = field(default_factory=dict)
    #: live instances (containers) this local cloud runs at most
    max_instances: int = 12
    #: seconds a copied image stays ``pending`` (0: available at once); promotion benches use it
    copy_seconds: float = 0.0


SETTINGS = Settings()
LOCK = threading.RLock()
#: the containers of live instances; None when the emulator knows no state dir (no image content)
INSTANCES: Any = None
#: the real health checks of live instances' targets
HEALTH = HealthChecker(LOCK)
#: the ALB listeners' loopback sockets
BALANCERS = LoadBalancers()
#: the access key id of a SigV4 signature when it is a 12-digit account id
_ACCOUNT_KEY = re.compile(r"Credential=(\d{12})/")
_installed = False


def source_ami_id(region: str) -> str:
    """The source image's id: stable per region (like a public AMI), the same in every account."""
    return "ami-0" + hashlib.sha256(f"baker-local-debian-12/{region}".encode()).hexdigest()[:16]


def utcnow() -> datetime:
    """moto's clock (naive UTC), which its launch and refresh times use."""
    from moto.core import utils

    return utils.utcnow()


# --------------------------------------------------------------------------- target health


def set_health(ami_id: str, state: str | None) -> None:
    """Force the targets of one AMI into ``state``; None returns them to the default."""
    if state is not None and state not in HEALTH_STATES:
        raise ValueError(f"state must be one of {', '.join(HEALTH_STATES)}")
    with LOCK:
        if state is None:
            SETTINGS.health_by_ami.pop(ami_id, None)
        else:
            SETTINGS.health_by_ami[ami_id] = state


def instance_health(instance: Any) -> str:
    """What a load balancer would say about this instance now: the knob's word, else initial-then-healthy."""
    if getattr(instance, "state", "running") != "running":
        return "unused"
    forced = SETTINGS.health_by_ami.get(getattr(instance, "image_id", ""))
    if forced is not None:
        return forced
    launched = getattr(instance, "launch_time", None)
    if isinstance(launched, datetime) and (utcnow() - launched).total_seconds() < SETTINGS.initial_seconds:
        return "initial"
    return "healthy"


def target_health(tg: Any, instance: Any) -> tuple[str, str | None, str | None]:
    """(state, reason, description) of one running instance's target in a target group.

    The fault-injection override first, then the real checks of a live instance, then the timer
    of an instance that is only a record.
    """
    forced = SETTINGS.health_by_ami.get(getattr(instance, "image_id", ""))
    if forced is None and is_live(instance):
        th = HEALTH.state(tg.arn, instance.id)
        return th.state, th.reason, th.description
    state = forced or instance_health(instance)
    reason, description = REASONS.get(state, (None, None)) if state != "healthy" else (None, None)
    return state, reason, description


def group_health(group: Any, instance: Any) -> str:
    """What the Auto Scaling group sees: healthy only when every target group of the group says so."""
    if getattr(instance, "state", "running") != "running":
        return "unused"
    if not is_live(instance) or not group.target_group_arns:
        return instance_health(instance)
    from moto.elbv2 import elbv2_backends

    groups = elbv2_backends[group.account_id][group.region].target_groups
    states = [target_health(groups[arn], instance)[0] for arn in group.target_group_arns if arn in groups]
    for worst in ("unhealthy", "initial", "draining", "unused"):
        if worst in states:
            return worst
    return "healthy" if states else instance_health(instance)


def live_targets() -> list[tuple[str, str, str | None, Check]]:
    """Every registered target of a running live instance, with its group's check (under LOCK)."""
    from moto.elbv2 import elbv2_backends

    found: list[tuple[str, str, str | None, Check]] = []
    if INSTANCES is None:
        return found
    for _account, regions in list(elbv2_backends.items()):
        for _region, backend in list(regions.items()):
            for tg in list(backend.target_groups.values()):
                for target in list(tg.targets.values()):
                    iid = str(target.get("Id", ""))
                    instance = backend.ec2_backend.get_instance_by_id(iid) if iid.startswith("i-") else None
                    if instance is None or not is_live(instance) or instance.state != "running":
                        continue
                    check = Check.of(tg, int(target.get("Port") or tg.port or 80))
                    netns_file = INSTANCES.netns_file(iid) if INSTANCES.booted(iid) else None
                    found.append((tg.arn, iid, netns_file, check))
    return found


def replace_elb_unhealthy() -> None:
    """A group with health_check_type ELB replaces live instances unhealthy past its grace period."""
    from moto.autoscaling import autoscaling_backends

    for _account, regions in list(autoscaling_backends.items()):
        for _region, backend in list(regions.items()):
            for group in list(backend.autoscaling_groups.values()):
                if group.health_check_type != "ELB" or not group.target_group_arns:
                    continue
                grace = float(group.health_check_grace_period or 0)
                for state in list(group.instance_states):
                    instance = state.instance
                    if state.lifecycle_state != "InService" or not is_live(instance):
                        continue
                    if (utcnow() - instance.launch_time).total_seconds() < grace:
                        continue
                    if group_health(group, instance) == "unhealthy":
                        log.info("%s: %s failed its ELB health checks; replacing it", group.name, instance.id)
                        backend.terminate_instance(instance.id, should_decrement=False)
                        backend.update_attached_target_groups(group.name)


def _forwarded(action: object) -> list[tuple[str, int]]:
    """(target group ARN, weight) of a listener's forward action."""
    data = getattr(action, "data", {}) or {}
    if data.get("Type") != "forward":
        return []
    groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
    if groups:
        return [(g["TargetGroupArn"], int(g.get("Weight", 1))) for g in groups]
    return [(data["TargetGroupArn"], 1)] if data.get("TargetGroupArn") else []


def sync_load_balancers() -> None:
    """Every ALB HTTP listener answers on loopback and forwards to its healthy live targets (under LOCK)."""
    from moto.elbv2 import elbv2_backends

    wanted: dict[str, tuple[str, str, str, int, list[Target]]] = {}
    for _account, regions in list(elbv2_backends.items()):
        for _region, backend in list(regions.items()):
            for lb in list(backend.load_balancers.values()):
                if lb.type != "application":
                    continue
                for listener in list(lb.listeners.values()):
                    if listener.protocol != "HTTP":
                        continue
                    targets: list[Target] = []
                    for action in listener.default_actions[:1]:
                        for arn, weight in _forwarded(action):
                            tg = backend.target_groups.get(arn)
                            targets += _healthy_targets(backend, tg) * max(weight, 0) if tg else []
                    wanted[listener.arn] = (lb.arn, lb.name, lb.dns_name, int(listener.port), targets)
    BALANCERS.sync(wanted)


def _healthy_targets(backend: Any, tg: Any) -> list[Target]:
    found = []
    for target in list(tg.targets.values()):
        iid = str(target.get("Id", ""))
        instance = backend.ec2_backend.get_instance_by_id(iid) if iid.startswith("i-") else None
        if instance is None or not is_live(instance) or instance.state != "running" or INSTANCES is None:
            continue
        netns_file = INSTANCES.netns_file(iid)
        if netns_file and target_health(tg, instance)[0] == "healthy":
            found.append(Target(iid, netns_file, int(target.get("Port") or tg.port), tg.arn))
    return found


def after_health_checks() -> None:
    """What follows each round of health checks: ELB replacements, then the load balancers' targets."""
    replace_elb_unhealthy()
    sync_load_balancers()


def _patch_target_health() -> None:
    from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

    original = FakeTargetGroup.health_for

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = original(self, target, ec2_backend)
        tid = str(target.get("Id", ""))
        if tid not in self.targets and HEALTH.is_draining(self.arn, tid):
            reason, description = REASONS["draining"]
            return FakeHealthStatus(
                tid, status.port, status.health_check_port, "draining", reason, description
            )
        if status.status != "healthy" or not tid.startswith("i-"):
            return status
        instance = ec2_backend.get_instance_by_id(tid)
        if instance is None:
            return status
        state, why, what = target_health(self, instance)
        if state == "healthy":
            return status
        reason, description = why or "Target.InvalidState", what or f"Target is {state}"
        return FakeHealthStatus(
            status.instance_id, status.port, status.health_check_port, state, reason, description
        )

    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]

    original_describe = ELBv2Backend.describe_target_health

    def describe_target_health(self: Any, target_group_arn: str, targets: list[dict[str, Any]]) -> Any:
        found = original_describe(self, target_group_arn, targets)
        if not targets:  # a target leaving the group is listed while it drains, as on AWS
            tg = self.target_groups[target_group_arn]
            listed = {s.instance_id for s in found}
            for iid in HEALTH.draining_in(target_group_arn):
                if iid not in listed:
                    found.append(tg.health_for({"Id": iid, "Port": tg.port}, self.ec2_backend))
        return found

    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]

    def drain(tg: Any, instance_ids: list[str]) -> None:
        """Live instances' targets drain for the group's deregistration delay (records leave at once)."""
        delay = float(tg.attributes.get("deregistration_delay.timeout_seconds", 300) or 0)
        for iid in instance_ids:
            instance = tg.ec2_backend.get_instance_by_id(iid)
            if instance is not None and is_live(instance):
                HEALTH.drain(tg.arn, iid, delay)

    original_deregister = FakeTargetGroup.deregister

    def deregister(self: Any, targets: list[dict[str, Any]]) -> None:
        leaving = [t["Id"] for t in targets if t["Id"] in self.targets]
        original_deregister(self, targets)
        drain(self, leaving)

    FakeTargetGroup.deregister = deregister  # type: ignore[method-assign]

    original_terminated = FakeTargetGroup.deregister_terminated_instances

    def deregister_terminated_instances(self: Any, instance_ids: list[str]) -> None:
        leaving = [iid for iid in instance_ids if iid in self.targets]
        original_terminated(self, instance_ids)
        drain(self, leaving)

    FakeTargetGroup.deregister_terminated_instances = deregister_terminated_instances  # type: ignore[method-assign]


def _patch_termination() -> None:
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


# --------------------------------------------------------------------------- live instances


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


def is_live(instance: Any) -> bool:
    """Whether the instance boots its image here (else it is a record only)."""
    return bool(getattr(instance, "baker_live", False))


def _patch_live_instances() -> None:
    """Instances of an AMI with content boot it; stop, start and terminate act on the container."""
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.amis import AmiBackend
    from moto.ec2.models.instances import Instance, InstanceBackend
    from moto.ec2.responses.general import General
    from moto.ec2.utils import Base64EncodedString

    from baker.local.instances import InstanceLimit, hostname_for

    original_run = InstanceBackend.run_instances

    def run_instances(self: Any, image_id: str, count: int, *args: Any, **kwargs: Any) -> Any:
        image = INSTANCES.image(image_id) if INSTANCES is not None else None
        if image is not None:
            INSTANCES.max_live = SETTINGS.max_instances
            try:
                INSTANCES.check_room(int(count))
            except InstanceLimit as exc:
                raise EC2ClientError("InstanceLimitExceeded", exc.message) from exc
        reservation = original_run(self, image_id, count, *args, **kwargs)
        if image is not None:
            for instance in reservation.instances:
                instance.baker_live = True  # type: ignore[attr-defined]
                INSTANCES.launch(
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
            if is_live(self) and INSTANCES is not None and was != self.state:
                getattr(INSTANCES, name)(self.id)
            return result

        return patched

    for name in ("start", "stop", "terminate"):
        setattr(Instance, name, acting_on_container(name))

    original_console = General.get_console_output

    def get_console_output(self: Any) -> Any:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        if not is_live(instance) or INSTANCES is None:
            return original_console(self)
        raw = INSTANCES.console(instance.id).encode()[-64 * 1024 :]  # EC2 keeps the last 64 KB
        output = Base64EncodedString(base64.b64encode(raw).decode())
        result = {"InstanceId": instance.id, "Timestamp": utcnow(), "Output": output}
        return ActionResult(result)

    General.get_console_output = get_console_output  # type: ignore[method-assign]

    original_deregister = AmiBackend.deregister_image

    def deregister_image(self: Any, ami_id: str) -> None:
        original_deregister(self, ami_id)
        if INSTANCES is not None:
            INSTANCES.forget_image(ami_id)  # the image store follows the emulator

    AmiBackend.deregister_image = deregister_image  # type: ignore[method-assign]


# --------------------------------------------------------------------------- launch templates


def _patch_launch_templates() -> None:
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


# --------------------------------------------------------------------------- images


def _tags_of(specs: list[dict[str, Any]] | None, resource_type: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs or []:
        if spec.get("ResourceType") == resource_type:
            out.update({t["Key"]: t.get("Value", "") for t in spec.get("Tags", [])})
    return out


def _patch_images() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.models.amis import Ami, AmiBackend
    from moto.ec2.responses.amis import AmisResponse

    class EbsAmi(Ami):
        """An EBS-backed image whose root snapshot says what it holds (size, type, encryption).

        moto's images always report a 15 GiB unencrypted ``standard`` volume, whatever they were
        made from; ``root`` is what the image really has.
        """

        root: dict[str, Any]

        @property
        def block_device_mappings(self) -> list[dict[str, Any]]:
            ebs = {"SnapshotId": self.ebs_snapshot.id, "DeleteOnTermination": True, **self.root}
            return [{"DeviceName": self.root_device_name, "Ebs": ebs}]

        @property
        def state(self) -> str:
            """``pending`` while a copy is still copying (Settings.copy_seconds), as EC2 says."""
            until = self.__dict__.get("baker_pending_until")
            if until is not None and time.monotonic() < until:
                return "pending"
            return str(self.__dict__.get("_state") or self.__dict__.get("state") or "available")

        @state.setter
        def state(self, value: str) -> None:
            self.__dict__["_state"] = value

    def make_ebs(ami: Any, root: dict[str, Any], root_device_name: str) -> None:
        """Turn one of moto's images into an EbsAmi with ``root`` as its root volume."""
        ami.__class__ = EbsAmi
        ami.root = {k: v for k, v in root.items() if v is not None}
        ami.root_device_type = "ebs"
        ami.root_device_name = root_device_name
        snapshot = ami.ebs_snapshot
        snapshot.encrypted = bool(root.get("Encrypted"))
        snapshot.kms_key_id = root.get("KmsKeyId")
        snapshot.volume.size = root.get("VolumeSize", snapshot.volume.size)  # the snapshot's VolumeSize

    def root_of(ami: Any) -> dict[str, Any]:
        if isinstance(ami, EbsAmi):
            return dict(ami.root)
        ebs = ami.block_device_mappings[0]["Ebs"]
        return {"VolumeSize": ebs.get("VolumeSize"), "VolumeType": ebs.get("VolumeType"), "Encrypted": False}

    original_load = AmiBackend._load_amis

    def _load_amis(self: Any) -> None:
        original_load(self)
        region = getattr(self, "region_name", "us-east-1")
        ami_id = source_ami_id(region)
        ami = Ami(
            self,
            ami_id,
            name=SOURCE_AMI_NAME,
            description="Debian 12 (bookworm) for baker's local cloud",
            owner_id=SOURCE_AMI_OWNER,
            public=True,
            virtualization_type="hvm",
            architecture="x86_64",
            hypervisor="xen",
            region_name=region,
            creation_date=datetime(2024, 1, 1),
            boot_mode="legacy-bios",
            snapshot_description="debian-12-amd64-baker-local root volume",
        )
        make_ebs(ami, {"VolumeSize": 8, "VolumeType": "gp3", "Encrypted": False}, "/dev/xvda")  # gap 9
        self.amis[ami_id] = ami

    AmiBackend._load_amis = _load_amis  # type: ignore[method-assign]

    original_create_image = AmiBackend.create_image

    def create_image(
        self: Any, instance_id: str, name: str, description: str, tag_specifications: list[dict[str, Any]]
    ) -> Any:
        image_specs = [s for s in tag_specifications or [] if s.get("ResourceType") != "snapshot"]
        ami = original_create_image(self, instance_id, name, description, image_specs)
        instance = self.get_instance(instance_id)
        source = self.amis.get(getattr(instance, "image_id", ""))
        device = source.root_device_name if source is not None else "/dev/xvda"
        root = root_of(source) if source is not None else {"VolumeSize": 8, "VolumeType": "gp3"}
        block = dict(instance.get_block_device_mapping).get(device)
        volume = self.volumes.get(block.volume_id) if block is not None else None
        if volume is not None:  # gap 8: the image is what the instance's root volume holds
            root = {
                "VolumeSize": volume.size,
                "VolumeType": volume.volume_type,
                "Encrypted": bool(volume.encrypted),
                "KmsKeyId": volume.kms_key_id if volume.encrypted else None,
            }
        make_ebs(ami, root, device)
        for key, value in _tags_of(tag_specifications, "snapshot").items():
            ami.ebs_snapshot.add_tag(key, value)
        return ami

    AmiBackend.create_image = create_image  # type: ignore[method-assign]

    original_copy = AmisResponse.copy_image

    def copy_image(self: Any) -> Any:
        from moto.ec2.models import ec2_backends

        result = original_copy(self)
        image = self.ec2_backend.amis[result.result["ImageId"]]  # type: ignore[index]
        source_region = self._get_param("SourceRegion")
        source_id = self._get_param("SourceImageId")
        source = ec2_backends[self.current_account][source_region].describe_images(ami_ids=[source_id])[0]
        root = root_of(source)  # gap 7: the copy is EBS-backed like its source, encrypted when asked
        if self._get_bool_param("Encrypted", False):
            root["Encrypted"] = True
            root["KmsKeyId"] = self._get_param("KmsKeyId") or root.get("KmsKeyId") or "alias/aws/ebs"
        make_ebs(image, root, source.root_device_name)
        if SETTINGS.copy_seconds > 0:  # gap 14: a copy is pending while EC2 copies its snapshots
            image.baker_pending_until = time.monotonic() + SETTINGS.copy_seconds
        if self._get_bool_param("CopyImageTags", False):
            for key, value in tag_map(source).items():
                image.add_tag(key, value)
        specs = self._get_param("TagSpecifications", [])
        for key, value in _tags_of(specs, "image").items():
            image.add_tag(key, value)
        for key, value in _tags_of(specs, "snapshot").items():
            image.ebs_snapshot.add_tag(key, value)
        return ActionResult(result.result)

    AmisResponse.copy_image = copy_image  # type: ignore[method-assign]


def tag_map(resource: Any) -> dict[str, str]:
    """An EC2 resource's tags as a mapping (moto's describe_tags rows use lower-case keys)."""
    return {t["key"]: t["value"] for t in resource.get_tags()}


# --------------------------------------------------------------------------- accounts


def _patch_accounts() -> None:
    """Several accounts, as promotion needs them (gap 11)."""
    from moto.core.responses import BaseResponse
    from moto.ec2.models.amis import AmiBackend

    original_account = BaseResponse.get_current_account

    def get_current_account(self: Any) -> str:
        signed = str(self.headers.get("Authorization", "")) if self.headers else ""
        found = _ACCOUNT_KEY.search(signed) or _ACCOUNT_KEY.search(
            str(self.querystring.get("X-Amz-Credential", ""))
        )
        if found and "MOTO_ACCOUNT_ID" not in os.environ and "x-moto-account-id" not in (self.headers or {}):
            return found.group(1)
        return original_account(self)

    BaseResponse.get_current_account = get_current_account  # type: ignore[method-assign]

    original_describe = AmiBackend.describe_images

    def describe_images(self: Any, *args: Any, **kwargs: Any) -> Any:
        shared = _shared_images(self)
        if not shared:
            return original_describe(self, *args, **kwargs)
        own = self.amis
        self.amis = {**shared, **own}  # requests run one at a time (see wsgi)
        try:
            return original_describe(self, *args, **kwargs)
        finally:
            self.amis = own

    AmiBackend.describe_images = describe_images  # type: ignore[method-assign]


def _shared_images(backend: Any) -> dict[str, Any]:
    """Images of other accounts in the same region whose launch permissions name this account."""
    from moto.ec2.models import ec2_backends

    found: dict[str, Any] = {}
    for account, regions in list(ec2_backends.items()):
        if account == backend.account_id:
            continue
        other = dict.get(regions, backend.region_name)  # only backends that exist; never create one
        if other is None:
            continue
        for ami in list(other.amis.values()):
            if {"UserId": backend.account_id} in ami.launch_permissions:
                found[ami.id] = ami
    return found


def _patch_tags() -> None:
    """A resource's own tags by its id, not by a scan of every tag (gap 12)."""
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    def get_tags(self: Any) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        own = dict.get(self.ec2_backend.tags, resource_id) or {}  # a defaultdict: never add a row
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [
            {"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in own.items()
        ]

    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]


def install() -> None:
    """Apply every extension (idempotent). Call before the server starts."""
    from baker.local import metrics, refresh

    global _installed
    if _installed:
        return
    _patch_target_health()
    _patch_termination()
    _patch_launch_templates()
    _patch_images()
    refresh.patch_autoscaling_api()
    _patch_accounts()
    _patch_tags()
    _patch_live_instances()
    metrics.install()
    _installed = True
