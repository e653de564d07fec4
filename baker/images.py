"""AMIs and their snapshots: the one home of every image operation.

bake, verify, deploy, promote, gc and status all stand on these: a typed ``Image`` read from
DescribeImages (paginated), lookup by recipe, tags on the image *and* its snapshots, copy, share
and deregister-with-snapshots. Clients come from the caller (``baker.aws``), so tests hand in
emulator-backed ones.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from baker import provenance
from baker.aws import Client, error_code
from baker.errors import AWSError, UsageError

log = logging.getLogger("baker")

AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
#: EC2 accepts at most this many resources in one CreateTags call and values in one filter
BATCH = 200
GIB = 1024**3


@dataclass(frozen=True)
class Image:
    id: str
    region: str
    name: str = ""
    state: str = "available"
    owner: str = ""
    created: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    snapshots: tuple[str, ...] = ()
    root_device: str = ""
    #: root volume size in GiB, and its encryption
    root_size: int = 0
    encrypted: bool = False
    kms_key_id: str | None = None
    #: the image's lifecycle as EC2 says it: DeprecationTime, DeregistrationProtection, LastLaunchedTime
    deprecation_time: str | None = None
    protection: str = "disabled"
    last_launched: str | None = None

    @classmethod
    def from_api(cls, data: Mapping[str, Any], region: str) -> Image:
        snaps: list[str] = []
        size, encrypted, kms = 0, False, None
        root = data.get("RootDeviceName") or ""
        for mapping in data.get("BlockDeviceMappings", []):
            ebs = mapping.get("Ebs") or {}
            if ebs.get("SnapshotId"):
                snaps.append(ebs["SnapshotId"])
            if mapping.get("DeviceName") == root or (not size and ebs):
                size = int(ebs.get("VolumeSize") or 0)
                encrypted = bool(ebs.get("Encrypted"))
                kms = ebs.get("KmsKeyId")
        return cls(
            id=data["ImageId"],
            region=region,
            name=data.get("Name", ""),
            state=data.get("State", "available"),
            owner=data.get("OwnerId", ""),
            created=data.get("CreationDate", ""),
            tags={t["Key"]: t.get("Value", "") for t in data.get("Tags", [])},
            snapshots=tuple(snaps),
            root_device=root,
            root_size=size,
            encrypted=encrypted,
            kms_key_id=kms,
            deprecation_time=data.get("DeprecationTime"),
            protection=data.get("DeregistrationProtection") or "disabled",
            last_launched=data.get("LastLaunchedTime"),
        )

    # -- provenance, read back

    @property
    def app(self) -> str | None:
        return self.tags.get(provenance.APP)

    @property
    def version(self) -> str | None:
        return self.tags.get(provenance.VERSION)

    @property
    def git_sha(self) -> str | None:
        return self.tags.get(provenance.GIT_SHA)

    @property
    def base_ami(self) -> str | None:
        """The base image a layered app image was built on (bake.layers); None otherwise."""
        return self.tags.get(provenance.BASE_AMI)

    @property
    def recipe(self) -> str | None:
        return self.tags.get(provenance.RECIPE)

    @property
    def verified(self) -> bool:
        return provenance.parse_verified(self.tags.get(provenance.VERIFIED)) is not None

    @property
    def promoted_from(self) -> str | None:
        return self.tags.get(provenance.PROMOTED_FROM)

    @property
    def revoked(self) -> dict[str, str] | None:
        """Who revoked it, when and why (``baker revoke``); None when it is not revoked."""
        return provenance.parse_revoked(self.tags.get(provenance.REVOKED))

    @property
    def protected(self) -> bool:
        return self.protection.startswith("enabled")

    def summary(self) -> dict[str, Any]:
        return {
            "ami_id": self.id,
            "region": self.region,
            "name": self.name,
            "version": self.version,
            "git_sha": self.git_sha,
            "created": self.created,
        }


def check_id(ami_id: str) -> str:
    if not AMI_ID.match(ami_id or ""):
        raise UsageError(f"{ami_id!r} is not an AMI id (ami- and 8 or 17 hex digits)")
    return ami_id


def get(ec2: Client, ami_id: str, region: str) -> Image | None:
    """The image, or None when this account cannot see it in ``region``."""
    check_id(ami_id)
    try:
        found = ec2.describe_images(ImageIds=[ami_id], IncludeDisabled=True).get("Images", [])
    except AWSError as exc:
        if error_code(exc).startswith("InvalidAMIID"):
            return None
        raise
    return Image.from_api(found[0], region) if found else None


def require(ec2: Client, ami_id: str, region: str) -> Image:
    """The image, available; a UsageError (exit 2) naming what is wrong otherwise."""
    image = get(ec2, ami_id, region)
    if image is None:
        raise UsageError(f"AMI {ami_id} not found in {region}", details={"ami_id": ami_id})
    if image.state != "available":
        revoked = image.revoked
        why = f" (revoked {revoked['at']} by {revoked['by']}: {revoked['reason']})" if revoked else ""
        raise UsageError(f"AMI {ami_id} is {image.state}, not available{why}", details={"ami_id": ami_id})
    return image


def many(ec2: Client, region: str, *, ids: Iterable[str] = (), **query: Any) -> Iterator[Image]:
    """Every image a DescribeImages query finds, page by page (ids in batches)."""
    wanted = sorted(set(ids))
    if wanted:
        filters = list(query.pop("Filters", []))
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start : start + BATCH]
            pages = ec2.get_paginator("describe_images").paginate(
                **query, Filters=[*filters, {"Name": "image-id", "Values": chunk}]
            )
            for page in pages:
                for data in page.get("Images", []):
                    yield Image.from_api(data, region)
        return
    for page in ec2.get_paginator("describe_images").paginate(**query):
        for data in page.get("Images", []):
            yield Image.from_api(data, region)


def of_app(ec2: Client, app: str, region: str) -> list[Image]:
    """The app's own images (tag baker:app) in this account and region, disabled ones too."""
    return list(
        many(
            ec2,
            region,
            Owners=["self"],
            IncludeDisabled=True,
            Filters=[{"Name": f"tag:{provenance.APP}", "Values": [app]}],
        )
    )


@dataclass(frozen=True)
class SourceImage:
    """The AMI a bake starts from, resolved once: its id goes into the recipe and the tags."""

    id: str
    name: str
    root_device: str
    owner: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "root_device": self.root_device, "owner": self.owner}


def resolve_source(ec2: Client, source: Mapping[str, Any]) -> SourceImage:
    """A ``bake.source_ami`` (as JSON: ``id``, or ``filter`` with name, owners, architecture,
    most_recent) resolved by one DescribeImages call: the explicit id, or the newest image the
    filter matches."""
    region = str(getattr(getattr(ec2.raw, "meta", None), "region_name", "") or "")
    if source.get("id"):
        found = get(ec2, source["id"], region)
        matches = [found] if found is not None else []
        what = source["id"]
    else:
        f = source["filter"]
        matches = list(
            many(
                ec2,
                region,
                Owners=list(f["owners"]),
                Filters=[
                    {"Name": "name", "Values": [f["name"]]},
                    {"Name": "architecture", "Values": [f["architecture"]]},
                    {"Name": "state", "Values": ["available"]},
                ],
            )
        )
        what = f"name {f['name']!r} owned by {', '.join(f['owners'])}"
        if len(matches) > 1 and not f["most_recent"]:
            raise UsageError(
                f"source AMI filter ({what}) matches {len(matches)} images and most_recent "
                "is false; narrow the filter or set most_recent: true"
            )
    if not matches:
        raise UsageError(f"no source AMI found for {what}")
    image = max(matches, key=lambda i: i.created)
    return SourceImage(
        id=image.id, name=image.name, root_device=image.root_device or "/dev/xvda", owner=image.owner
    )


def find_by_recipe(ec2: Client, digest: str, region: str) -> Image | None:
    """The newest available image of this account tagged with the recipe (one call)."""
    found = list(
        many(
            ec2,
            region,
            Owners=["self"],
            Filters=[
                {"Name": f"tag:{provenance.RECIPE}", "Values": [digest]},
                {"Name": "state", "Values": ["available"]},
            ],
        )
    )
    return max(found, key=lambda i: i.created) if found else None


def find_tagged(ec2: Client, region: str, key: str, value: str) -> list[Image]:
    """This account's available images with tag ``key`` = ``value`` (a promoted copy, say)."""
    return list(
        many(
            ec2,
            region,
            Owners=["self"],
            Filters=[{"Name": f"tag:{key}", "Values": [value]}, {"Name": "state", "Values": ["available"]}],
        )
    )


def tag(ec2: Client, image: Image, tags: Mapping[str, str]) -> list[str]:
    """Set ``tags`` on the image and each of its snapshots where they differ; returns what changed."""
    resources = []
    if any(image.tags.get(k) != v for k, v in tags.items()):
        resources.append(image.id)
    if image.snapshots:
        for snap in ec2.describe_snapshots(SnapshotIds=list(image.snapshots)).get("Snapshots", []):
            have = {t["Key"]: t["Value"] for t in snap.get("Tags", [])}
            if any(have.get(k) != v for k, v in tags.items()):
                resources.append(snap["SnapshotId"])
    if resources:
        log.info("tagging %s", ", ".join(resources))
        ec2.create_tags(Resources=resources, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return resources


def share(ec2: Client, image: Image, accounts: Iterable[str]) -> list[str]:
    """Let ``accounts`` launch and copy the image: launch permission and createVolumePermission."""
    accounts = sorted(set(accounts))
    if not accounts:
        return []
    ec2.modify_image_attribute(ImageId=image.id, LaunchPermission={"Add": [{"UserId": a} for a in accounts]})
    for snap in image.snapshots:
        ec2.modify_snapshot_attribute(
            SnapshotId=snap,
            Attribute="createVolumePermission",
            OperationType="add",
            UserIds=accounts,
        )
    return accounts


def copy(
    ec2: Client,
    source: Image,
    *,
    region: str,
    name: str,
    encrypted: bool,
    kms_key_id: str | None,
    tags: Mapping[str, str],
    description: str = "",
) -> Image:
    """CopyImage into the client's account and ``region``; waits until it is available, then tags
    it and its snapshots (tags do not cross accounts, so they are always set, never copied)."""
    kwargs: dict[str, Any] = {
        "SourceImageId": source.id,
        "SourceRegion": source.region,
        "Name": name[:128],
        "Description": description or f"copy of {source.id} ({source.region})",
    }
    if encrypted:
        kwargs["Encrypted"] = True
        if kms_key_id:
            kwargs["KmsKeyId"] = kms_key_id
    try:
        new_id = ec2.copy_image(**kwargs)["ImageId"]
    except AWSError as exc:
        if "kms" in exc.message.lower() or error_code(exc).startswith(("KMS", "AccessDenied")):
            key = kms_key_id or source.kms_key_id or "the default EBS key"
            raise AWSError(
                f"copying {source.id} into {region} failed on its encryption: {exc.message}. The account "
                f"that copies needs kms:Decrypt and kms:CreateGrant on the source's key "
                f"({source.kms_key_id or 'the source default key'}) and kms:Encrypt, kms:GenerateDataKey* "
                f"and kms:CreateGrant on {key}",
                tool="aws",
                details={"source_kms_key_id": source.kms_key_id, "kms_key_id": kms_key_id},
            ) from exc
        raise
    ec2.get_waiter("image_available").wait(ImageIds=[new_id], WaiterConfig={"Delay": 2, "MaxAttempts": 900})
    image = require(ec2, new_id, region)
    tag(ec2, image, tags)
    return require(ec2, new_id, region)


def snapshot_bytes(ec2: Client, image: Image) -> int:
    """What the image's snapshots hold, from their VolumeSize (GiB)."""
    if not image.snapshots:
        return 0
    try:
        snaps = ec2.describe_snapshots(SnapshotIds=list(image.snapshots)).get("Snapshots", [])
    except AWSError as exc:
        if error_code(exc).startswith("InvalidSnapshot"):
            return 0
        raise
    return sum(int(s.get("VolumeSize") or 0) for s in snaps) * GIB


def deregister(ec2: Client, image: Image) -> list[str]:
    """Deregister the image, then delete its snapshots; returns the snapshots deleted.

    Idempotent: an image already gone (an interrupted run) still gets its snapshots deleted.
    """
    try:
        ec2.deregister_image(ImageId=image.id)
    except AWSError as exc:
        if not error_code(exc).startswith("InvalidAMIID"):
            raise
    deleted = []
    for snap in image.snapshots:
        try:
            ec2.delete_snapshot(SnapshotId=snap)
        except AWSError as exc:
            if not error_code(exc).startswith("InvalidSnapshot"):
                raise
        deleted.append(snap)
    return deleted


#: instance states in which an instance still needs its AMI (everything but terminated)
NOT_TERMINATED = ("pending", "running", "shutting-down", "stopping", "stopped")


def instances_using(ec2: Client, ami_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """AMI id -> [(instance id, state)] of the instances not terminated that run it (a filter per
    200 AMIs, paginated: an AMI no instance runs costs nothing)."""
    wanted = sorted(set(ami_ids))
    found: dict[str, list[tuple[str, str]]] = {}
    for start in range(0, len(wanted), BATCH):
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[
                {"Name": "image-id", "Values": wanted[start : start + BATCH]},
                {"Name": "instance-state-name", "Values": list(NOT_TERMINATED)},
            ]
        )
        for page in pages:
            for res in page.get("Reservations", []):
                for inst in res.get("Instances", []):
                    state = (inst.get("State") or {}).get("Name", "")
                    found.setdefault(inst.get("ImageId", ""), []).append((inst["InstanceId"], state))
    return found


#: past this many snapshots one listing of the account's own snapshots beats filters of 200
LIST_ALL_SNAPSHOTS = 2000


def snapshot_sizes(ec2: Client, snapshot_ids: Iterable[str]) -> dict[str, int]:
    """Snapshot id -> bytes (its VolumeSize); a snapshot already gone is absent from the answer.

    A filter per 200 snapshots, or (for more than LIST_ALL_SNAPSHOTS) one paginated listing of the
    account's own snapshots: a filter's cost grows with every snapshot of the region.
    """
    wanted = sorted(set(snapshot_ids))
    queries: list[dict[str, Any]]
    if len(wanted) > LIST_ALL_SNAPSHOTS:
        queries = [{"OwnerIds": ["self"], "PaginationConfig": {"PageSize": 1000}}]
    else:
        queries = [
            {"OwnerIds": ["self"], "Filters": [{"Name": "snapshot-id", "Values": wanted[i : i + BATCH]}]}
            for i in range(0, len(wanted), BATCH)
        ]
    keep = set(wanted)
    sizes: dict[str, int] = {}
    for query in queries:
        for page in ec2.get_paginator("describe_snapshots").paginate(**query):
            for snap in page.get("Snapshots", []):
                if snap["SnapshotId"] in keep:
                    sizes[snap["SnapshotId"]] = int(snap.get("VolumeSize") or 0) * GIB
    return sizes


#: what DescribeImageReferences answers where the account or endpoint does not offer it
UNSUPPORTED = ("InvalidAction", "UnsupportedOperation", "UnknownOperation", "NotImplemented", "InternalError")


def references(ec2: Client, ami_ids: Iterable[str]) -> dict[str, list[str]] | None:
    """AMI id -> the ARNs of this account's instances (not terminated) and launch templates in the
    region that use it, as DescribeImageReferences says; None where the API is not offered (the
    caller falls back to its own reads)."""
    wanted = sorted(set(ami_ids))
    found: dict[str, list[str]] = {}
    alive = list(NOT_TERMINATED)
    try:
        for start in range(0, len(wanted), BATCH):
            pages = ec2.get_paginator("describe_image_references").paginate(
                ImageIds=wanted[start : start + BATCH],
                ResourceTypes=[
                    {
                        "ResourceType": "ec2:Instance",
                        "ResourceTypeOptions": [{"OptionName": "state-name", "OptionValues": alive}],
                    },
                    {"ResourceType": "ec2:LaunchTemplate"},
                ],
            )
            for page in pages:
                for ref in page.get("ImageReferences", []):
                    found.setdefault(ref["ImageId"], []).append(ref["Arn"])
    except AWSError as exc:
        if error_code(exc) in UNSUPPORTED:
            log.info("DescribeImageReferences is not offered here (%s): baker reads for itself", exc.message)
            return None
        raise
    return found


#: what RegisterImage takes over from the image a child is built on
_INHERITED = (
    "Architecture",
    "BootMode",
    "EnaSupport",
    "SriovNetSupport",
    "VirtualizationType",
    "RootDeviceName",
    "TpmSupport",
    "ImdsSupport",
)


def register_child(
    ec2: Client, base: Image, *, root_snapshot: str, name: str, description: str, tags: Mapping[str, str]
) -> Image:
    """Register an image like ``base`` (architecture, boot mode, ENA/SR-IOV support, block device
    mappings) whose root volume is ``root_snapshot``; the tags go on the image (the snapshot has
    its own from StartSnapshot)."""
    data = ec2.describe_images(ImageIds=[base.id])["Images"][0]
    kwargs: dict[str, Any] = {k: data[k] for k in _INHERITED if data.get(k) not in (None, "")}
    root = data.get("RootDeviceName") or base.root_device
    mappings = []
    for mapping in data.get("BlockDeviceMappings", []):
        mapping = {k: v for k, v in mapping.items()}
        if mapping.get("Ebs"):
            ebs = {k: v for k, v in mapping["Ebs"].items() if k not in ("Encrypted", "KmsKeyId")}
            if mapping.get("DeviceName") == root:
                ebs["SnapshotId"] = root_snapshot
            mapping["Ebs"] = ebs
        mappings.append(mapping)
    kwargs.update(
        Name=name,
        Description=description[:255],
        BlockDeviceMappings=mappings,
    )
    ami = ec2.register_image(**kwargs)["ImageId"]
    try:
        ec2.create_tags(Resources=[ami], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        found = get(ec2, ami, base.region)
        if found is None:
            raise UsageError(f"registered {ami} but it cannot be found in {base.region}")
    except BaseException:
        # an image without its provenance is half made: it goes (its snapshot is the caller's)
        ec2.deregister_image(ImageId=ami)
        raise
    return found
