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
2. Target health cannot be driven: every registered target reports ``healthy`` forever. Now a target
   reports ``initial`` for ``Settings.initial_seconds`` after its launch, then ``healthy``, unless the
   knob (``POST /_baker/health``) set its AMI to ``initial``, ``healthy`` or ``unhealthy``: then it
   reports that, from the moment it is set.
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
alarms of a refresh (recorded in Preferences, not waited on); an ELB-unhealthy instance is not replaced
by the group; warm pools during a refresh.

``install()`` applies all of it once per process, before the server starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger("baker")

SOURCE_AMI_NAME = "debian-12-amd64-baker-local"
SOURCE_AMI_OWNER = "136693071363"
HEALTH_STATES = ("initial", "healthy", "unhealthy")
ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress")


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


SETTINGS = Settings()
#: the access key id of a SigV4 signature when it is a 12-digit account id
_ACCOUNT_KEY = re.compile(r"Credential=(\d{12})/")
LOCK = threading.RLock()
_installed = False


def source_ami_id(region: str) -> str:
    """The source image's id: stable per region (like a public AMI), the same in every account."""
    return "ami-0" + hashlib.sha256(f"baker-local-debian-12/{region}".encode()).hexdigest()[:16]


def _utcnow() -> datetime:
    from moto.core.utils import utcnow

    return utcnow()


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
    if isinstance(launched, datetime) and (_utcnow() - launched).total_seconds() < SETTINGS.initial_seconds:
        return "initial"
    return "healthy"


_REASONS = {
    "initial": ("Elb.RegistrationInProgress", "Target registration is in progress"),
    "unhealthy": ("Target.FailedHealthChecks", "Health checks failed"),
}


def _patch_target_health() -> None:
    from moto.elbv2.models import FakeHealthStatus, FakeTargetGroup

    original = FakeTargetGroup.health_for

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = original(self, target, ec2_backend)
        if status.status != "healthy" or not str(target.get("Id", "")).startswith("i-"):
            return status
        instance = ec2_backend.get_instance_by_id(target["Id"])
        if instance is None:
            return status
        state = instance_health(instance)
        if state == "healthy":
            return status
        reason, description = _REASONS.get(state, ("Target.InvalidState", f"Target is {state}"))
        return FakeHealthStatus(
            status.instance_id, status.port, status.health_check_port, state, reason, description
        )

    FakeTargetGroup.health_for = health_for  # type: ignore[method-assign]


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
        if self._get_bool_param("CopyImageTags", False):
            for key, value in _tag_map(source).items():
                image.add_tag(key, value)
        specs = self._get_param("TagSpecifications", [])
        for key, value in _tags_of(specs, "image").items():
            image.add_tag(key, value)
        for key, value in _tags_of(specs, "snapshot").items():
            image.ebs_snapshot.add_tag(key, value)
        return ActionResult(result.result)

    AmisResponse.copy_image = copy_image  # type: ignore[method-assign]


def _tag_map(resource: Any) -> dict[str, str]:
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


# --------------------------------------------------------------------------- instance refresh


@dataclass
class Refresh:
    """One instance refresh of one group, advanced by ``Refreshes.tick``."""

    id: str
    account_id: str
    region: str
    group_name: str
    strategy: str
    preferences: dict[str, Any]
    desired: dict[str, Any] | None
    #: (template id, version) new instances come from
    target: tuple[str, str]
    #: (template id, version) the replaced instances came from: what a rollback goes back to
    previous: tuple[str, str] | None
    to_replace: list[str]
    total: int
    status: str = "Pending"
    status_reason: str | None = None
    start_time: datetime = field(default_factory=_utcnow)
    end_time: datetime | None = None
    created: float = field(default_factory=time.monotonic)
    launched: list[str] = field(default_factory=list)
    #: instances of the running batch: launched, waiting to be healthy; old ones waiting to go
    batch_new: list[str] = field(default_factory=list)
    batch_old: list[str] = field(default_factory=list)
    batch_started: float = 0.0
    done: int = 0
    rollback: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        percent = (
            100
            if self.status in ("Successful", "RollbackSuccessful")
            else (int(100 * self.done / self.total) if self.total else 100)
        )
        out: dict[str, Any] = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group_name,
            "Status": self.status,
            "StartTime": self.start_time,
            "PercentageComplete": percent,
            "InstancesToUpdate": max(self.total - self.done, 0),
            "ProgressDetails": {
                "LivePoolProgress": {
                    "PercentageComplete": percent,
                    "InstancesToUpdate": max(self.total - self.done, 0),
                }
            },
            "Preferences": self.preferences,
            "Strategy": self.strategy,
        }
        if self.status_reason:
            out["StatusReason"] = self.status_reason
        if self.end_time:
            out["EndTime"] = self.end_time
        if self.desired:
            out["DesiredConfiguration"] = self.desired
        if self.rollback:
            out["RollbackDetails"] = self.rollback
        return out


class Refreshes:
    """All refreshes of the emulator, advanced by one background thread under ``LOCK``."""

    def __init__(self) -> None:
        self.by_group: dict[tuple[str, str, str], list[Refresh]] = {}
        self._thread: threading.Thread | None = None

    def start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="baker-refresh", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            time.sleep(SETTINGS.tick_seconds)
            try:
                self.tick()
            except Exception:  # keep the emulator alive; the refresh shows what happened
                log.exception("instance refresh step failed")

    def history(self, account: str, region: str, group: str) -> list[Refresh]:
        return self.by_group.setdefault((account, region, group), [])

    def active(self, account: str, region: str, group: str) -> Refresh | None:
        return next((r for r in self.history(account, region, group) if r.status in ACTIVE), None)

    def tick(self) -> None:
        with LOCK:
            for refreshes in list(self.by_group.values()):
                for refresh in refreshes:
                    if refresh.status in ACTIVE:
                        self._step(refresh)

    # -- one step

    def _step(self, r: Refresh) -> None:
        from moto.autoscaling import autoscaling_backends

        backend = autoscaling_backends[r.account_id][r.region]
        group = backend.autoscaling_groups.get(r.group_name)
        if group is None:
            self._finish(r, "Failed", "the Auto Scaling group was deleted")
            return
        if r.status == "Pending":
            if time.monotonic() - r.created >= SETTINGS.tick_seconds:
                r.status = "InProgress"
            return
        if r.status == "Cancelling":
            self._finish(r, "Cancelled", "Refresh was cancelled by the user")
            return
        rolling_back = r.status == "RollbackInProgress"
        if r.batch_new or r.batch_old:
            states = [instance_health(i) for i in self._instances(group, r.batch_new)]
            if all(s == "healthy" for s in states):
                if r.batch_old:  # launch-before-terminate: the old ones go once the new are healthy
                    self._terminate(backend, group, r.batch_old)
                r.done += len(r.batch_new)
                r.batch_new, r.batch_old = [], []
            elif time.monotonic() - r.batch_started > SETTINGS.refresh_timeout:
                bad = sum(1 for s in states if s != "healthy")
                reason = (
                    f"{bad} replacement instance(s) did not become healthy within "
                    f"{SETTINGS.refresh_timeout:.0f}s"
                )
                if not rolling_back and r.preferences.get("AutoRollback") and r.previous is not None:
                    self.start_rollback(r, group, f"Instance refresh failed: {reason}")
                else:
                    self._finish(r, "RollbackFailed" if rolling_back else "Failed", reason)
            return
        present = {s.instance.id for s in group.instance_states}
        r.to_replace = [i for i in r.to_replace if i in present]
        if not r.to_replace:
            self._complete(r, group)
            return
        self._next_batch(backend, group, r)

    def _instances(self, group: Any, ids: list[str]) -> list[Any]:
        found = []
        for instance_id in ids:
            instance = group.ec2_backend.get_instance_by_id(instance_id)
            if instance is not None:
                found.append(instance)
        return found

    def _next_batch(self, backend: Any, group: Any, r: Refresh) -> None:
        desired = max(group.desired_capacity or 0, 1)
        min_pct = int(r.preferences.get("MinHealthyPercentage", 90))
        max_pct = int(r.preferences.get("MaxHealthyPercentage", 100))
        if max_pct > 100:
            size = max(1, (desired * max_pct) // 100 - desired)
        else:
            size = max(1, desired - -(-desired * min_pct // 100))
        old = r.to_replace[:size]
        r.to_replace = r.to_replace[size:]
        if max_pct <= 100:
            self._terminate(backend, group, old)
        else:
            r.batch_old = old
        r.batch_new = self._launch(backend, group, len(old), r.target)
        r.launched.extend(r.batch_new)
        r.batch_started = time.monotonic()

    def _terminate(self, backend: Any, group: Any, ids: list[str]) -> None:
        group.instance_states = [s for s in group.instance_states if s.instance.id not in ids]
        group.ec2_backend.terminate_instances(ids)  # leaves the target groups (gap 3)
        backend.update_attached_elbs(group.name)

    def _launch(self, backend: Any, group: Any, count: int, target: tuple[str, str]) -> list[str]:
        if count <= 0:
            return []
        template_id, version = target
        saved = (group.ec2_launch_template, group.launch_template_version)
        before = {s.instance.id for s in group.instance_states}
        try:
            group.ec2_launch_template = group.ec2_backend.get_launch_template(template_id)
            group.launch_template_version = version
            group.replace_autoscaling_group_instances(count, group.get_propagated_tags())
        finally:
            group.ec2_launch_template, group.launch_template_version = saved
        backend.update_attached_target_groups(group.name)
        return [s.instance.id for s in group.instance_states if s.instance.id not in before]

    def _complete(self, r: Refresh, group: Any) -> None:
        if r.status == "RollbackInProgress":
            self._set_group_template(group, r.target)
            self._finish(r, "RollbackSuccessful", r.status_reason)
            return
        if r.desired and "LaunchTemplate" in r.desired:
            self._set_group_template(group, r.target)
        self._finish(r, "Successful", None)

    def _set_group_template(self, group: Any, target: tuple[str, str]) -> None:
        group.ec2_launch_template = group.ec2_backend.get_launch_template(target[0])
        group.launch_template_version = target[1]
        group.provided_launch_template_version = target[1]

    def _finish(self, r: Refresh, status: str, reason: str | None) -> None:
        r.status = status
        r.status_reason = reason
        r.end_time = _utcnow()
        if r.rollback is not None:
            r.rollback["PercentageCompleteOnRollback"] = 100 if status == "RollbackSuccessful" else 0

    def start_rollback(self, r: Refresh, group: Any, reason: str) -> None:
        assert r.previous is not None
        present = {s.instance.id for s in group.instance_states}
        back = [i for i in r.launched if i in present]
        # a batch in flight: its replacements go back, the old ones it kept stay
        r.batch_new, r.batch_old = [], []
        r.rollback = {
            "RollbackReason": reason,
            "RollbackStartTime": _utcnow(),
            "PercentageCompleteOnRollback": 0,
            "InstancesToUpdateOnRollback": len(back),
        }
        r.status, r.status_reason = "RollbackInProgress", reason
        r.target, r.previous = r.previous, r.target
        r.to_replace, r.total, r.done, r.launched = back, len(back), 0, []
        # new launches (and the group itself) go back to what ran before
        self._set_group_template(group, r.target)


REFRESHES = Refreshes()


def _template_of(instance_state: Any) -> tuple[str, str] | None:
    spec = instance_state.launch_template
    if not spec:
        return None
    return spec["LaunchTemplateId"], str(spec["Version"])


def _resolve(group: Any, spec: dict[str, Any] | None) -> tuple[str, str]:
    """(template id, version as the group will launch it) of a LaunchTemplate spec or of the group."""
    from moto.autoscaling.exceptions import ValidationError

    backend = group.ec2_backend
    if spec:
        if spec.get("LaunchTemplateId"):
            template = backend.get_launch_template(spec["LaunchTemplateId"])
        else:
            template = backend.get_launch_template_by_name(spec["LaunchTemplateName"])
        version = spec.get("Version") or "$Default"
    else:
        if group.ec2_launch_template is None:
            raise ValidationError("instance refresh of a group without a launch template is not emulated")
        template, version = group.ec2_launch_template, group.launch_template_version
    return template.id, str(version)


def _number(group: Any, target: tuple[str, str]) -> str:
    template = group.ec2_backend.get_launch_template(target[0])
    return str(template.get_version(target[1]).number)


def _patch_autoscaling_api() -> None:
    from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
    from moto.autoscaling.responses import AutoScalingResponse
    from moto.core.responses import ActionResult

    class InProgress(AutoscalingClientError):
        code = "InstanceRefreshInProgressFault"
        message = (
            "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh."
        )

    class NotFound(AutoscalingClientError):
        code = "ActiveInstanceRefreshNotFoundFault"
        message = "No in progress or pending Instance Refresh found for Auto Scaling group"

    class Irreversible(AutoscalingClientError):
        code = "IrreversibleInstanceRefreshFault"
        message = "The rollback failed: the previous configuration of the group is not known."

    def _group(self: Any) -> Any:
        name = self._get_param("AutoScalingGroupName")
        group = self.autoscaling_backend.autoscaling_groups.get(name)
        if group is None:
            raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup {name} not found")
        return group

    def start_instance_refresh(self: Any) -> ActionResult:
        group = _group(self)
        with LOCK:
            if REFRESHES.active(self.current_account, self.region, group.name):
                raise InProgress()
            desired = self._get_param("DesiredConfiguration") or None
            prefs = dict(self._get_param("Preferences") or {})
            prefs.setdefault("MinHealthyPercentage", 90)
            prefs.setdefault("InstanceWarmup", group.health_check_grace_period or 0)
            prefs.setdefault("SkipMatching", False)
            prefs.setdefault("AutoRollback", False)
            prefs.setdefault("ScaleInProtectedInstances", "Ignore")
            prefs.setdefault("StandbyInstances", "Ignore")
            target = _resolve(group, (desired or {}).get("LaunchTemplate"))
            target_number = _number(group, target)
            olds = [s for s in group.instance_states if s.lifecycle_state == "InService"]
            if prefs["SkipMatching"]:
                olds = [s for s in olds if _template_of(s) != (target[0], target_number)]
            previous_versions = [_template_of(s) for s in olds if _template_of(s)]
            previous = max(set(previous_versions), key=previous_versions.count) if previous_versions else None
            refresh = Refresh(
                id=str(uuid.uuid4()),
                account_id=self.current_account,
                region=self.region,
                group_name=group.name,
                strategy=self._get_param("Strategy") or "Rolling",
                preferences=prefs,
                desired=desired,
                target=target,
                previous=previous,
                to_replace=[s.instance.id for s in olds],
                total=len(olds),
            )
            REFRESHES.history(self.current_account, self.region, group.name).insert(0, refresh)
        return ActionResult({"InstanceRefreshId": refresh.id})

    def describe_instance_refreshes(self: Any) -> ActionResult:
        group = _group(self)
        REFRESHES.tick()
        ids = self._get_param("InstanceRefreshIds") or []
        limit = int(self._get_param("MaxRecords") or 50)
        with LOCK:
            found = [
                r.describe()
                for r in REFRESHES.history(self.current_account, self.region, group.name)
                if not ids or r.id in ids
            ]
        return ActionResult({"InstanceRefreshes": found[:limit]})

    def cancel_instance_refresh(self: Any) -> ActionResult:
        group = _group(self)
        with LOCK:
            refresh = REFRESHES.active(self.current_account, self.region, group.name)
            if refresh is None or refresh.status in ("Cancelling", "RollbackInProgress"):
                raise NotFound()
            refresh.status = "Cancelling"
        return ActionResult({"InstanceRefreshId": refresh.id})

    def rollback_instance_refresh(self: Any) -> ActionResult:
        group = _group(self)
        with LOCK:
            refresh = REFRESHES.active(self.current_account, self.region, group.name)
            if refresh is None or refresh.status in ("Cancelling", "RollbackInProgress"):
                raise NotFound()
            if refresh.previous is None:
                raise Irreversible()
            REFRESHES.start_rollback(refresh, group, "Rollback requested by the user")
        return ActionResult({"InstanceRefreshId": refresh.id})

    def describe_traffic_sources(self: Any) -> ActionResult:
        group = _group(self)
        sources = [
            {"Identifier": arn, "Type": "elbv2", "TrafficSource": arn} for arn in group.target_group_arns
        ]
        return ActionResult({"TrafficSources": sources})

    for fn in (
        start_instance_refresh,
        describe_instance_refreshes,
        cancel_instance_refresh,
        rollback_instance_refresh,
        describe_traffic_sources,
    ):
        setattr(AutoScalingResponse, fn.__name__, fn)


# --------------------------------------------------------------------------- the /_baker API


def inventory() -> dict[str, Any]:
    """What the local cloud holds: our images and the instances, across accounts and regions."""
    from moto.ec2.models import ec2_backends

    images: list[dict[str, Any]] = []
    instances: list[dict[str, Any]] = []
    with LOCK:
        for account, regions in list(ec2_backends.items()):
            for region, backend in list(regions.items()):
                for ami in list(getattr(backend, "amis", {}).values()):
                    if ami.owner_id == account and ami.owner_alias != "amazon":
                        tags = _tag_map(ami)
                        images.append(
                            {
                                "ami_id": ami.id,
                                "account": account,
                                "region": region,
                                "name": ami.name,
                                "version": tags.get("baker:version"),
                                "health": SETTINGS.health_by_ami.get(ami.id),
                            }
                        )
                for reservation in list(getattr(backend, "reservations", {}).values()):
                    for i in reservation.instances:
                        if i.state in ("running", "pending", "stopped"):
                            instances.append(
                                {
                                    "instance_id": i.id,
                                    "account": account,
                                    "region": region,
                                    "ami_id": i.image_id,
                                    "state": i.state,
                                    "health": instance_health(i),
                                }
                            )
    return {"images": images, "instances": instances}


def handle(method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """The emulator's own endpoints under ``/_baker/`` (JSON in, JSON out)."""
    try:
        data = json.loads(body or b"{}") if method == "POST" else {}
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        if path == "/_baker/health" and method == "POST":
            ami_id, state = data.get("ami_id"), data.get("state")
            if not isinstance(ami_id, str) or not ami_id.startswith("ami-"):
                raise ValueError("ami_id must be an AMI id")
            set_health(ami_id, state)
            return 200, {"ami_id": ami_id, "state": state}
        if path == "/_baker/health" and method == "GET":
            return 200, {"health_by_ami": dict(SETTINGS.health_by_ami)}
        if path == "/_baker/settings":
            with LOCK:
                for key in ("initial_seconds", "refresh_timeout", "tick_seconds"):
                    if key in data:
                        setattr(SETTINGS, key, float(data[key]))
                return 200, {
                    k: getattr(SETTINGS, k) for k in ("initial_seconds", "refresh_timeout", "tick_seconds")
                }
        if path == "/_baker/status":
            return 200, inventory()
    except (ValueError, TypeError) as exc:
        return 400, {"error": str(exc)}
    return 404, {"error": f"no such endpoint: {method} {path}"}


def wsgi(app: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap moto's WSGI app so that ``/_baker/...`` reaches ``handle``."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if not path.startswith("/_baker/"):
            # one request at a time: the refresh thread changes the same backends under LOCK
            with LOCK:
                return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, payload = handle(environ.get("REQUEST_METHOD", "GET"), path, body)
        raw = json.dumps(payload, default=str).encode()
        phrase = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
        start_response(
            f"{status} {phrase}", [("Content-Type", "application/json"), ("Content-Length", str(len(raw)))]
        )
        return [raw]

    return application


def install() -> None:
    """Apply every extension (idempotent). Call before the server starts."""
    global _installed
    if _installed:
        return
    _patch_target_health()
    _patch_termination()
    _patch_launch_templates()
    _patch_images()
    _patch_autoscaling_api()
    _patch_accounts()
    _patch_tags()
    _installed = True
