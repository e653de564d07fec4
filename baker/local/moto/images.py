"""Images as EBS-backed AMIs are (gaps 7, 8, 9, 14 and 17).

7. ``CopyImage`` ignores ``CopyImageTags`` and ``TagSpecifications`` (the copy has no tags),
   ignores ``Encrypted``/``KmsKeyId``, and the copy reports root device type ``standard`` on
   /dev/sda1 whatever its source was. AWS (Amazon EC2 API Reference, "CopyImage"): tags as asked,
   EBS-backed like the source, encrypted with the key asked for.
8. ``CreateImage`` with ``snapshot`` TagSpecifications answers HTTP 500 (NotImplementedError), and
   the image ignores the instance's root volume: always an unencrypted 15 GiB ``standard``
   snapshot. AWS ("CreateImage"): the image's root snapshot has the root volume's size, type,
   encryption and KMS key, and the snapshots are tagged as asked.
9. No Debian source image: added ``debian-12-amd64-baker-local`` owned by 136693071363, public,
   EBS-backed (/dev/xvda with a snapshot), in every region of every account.
14. A copied image is ``available`` at once. With ``Settings.copy_seconds`` it stays ``pending``
    that long, as EC2 keeps a copy while its snapshots copy (Amazon EC2 User Guide, "Copy an
    Amazon EC2 AMI").
17. ``RegisterImage`` ignores the block device mappings, the root device name, the architecture,
    the boot mode and ENA support: every registered image gets an empty 15 GiB snapshot of its own.
    AWS ("RegisterImage"): the root device's mapping names the snapshot the image boots, with its
    size and encryption; the snapshot is in use while the image exists (DeleteSnapshot refuses it).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from baker.local.moto.state import (
    SETTINGS,
    SOURCE_AMI_NAME,
    SOURCE_AMI_OWNER,
    copy_blocks,
    source_ami_id,
    tag_map,
)


def _tags_of(specs: list[dict[str, Any]] | None, resource_type: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs or []:
        if spec.get("ResourceType") == resource_type:
            out.update({t["Key"]: t.get("Value", "") for t in spec.get("Tags", [])})
    return out


def install() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.exceptions import InvalidSnapshotIdError
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
        copy_blocks(source.ebs_snapshot, image.ebs_snapshot)  # the copy's snapshot holds the blocks
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

    original_register = AmisResponse.register_image

    def register_image(self: Any) -> Any:
        """Gap 20: the image's root is the snapshot its block device mapping names."""
        mappings = self._get_param("BlockDeviceMappings") or []
        root_name = self._get_param("RootDeviceName") or "/dev/xvda"
        root = next((m for m in mappings if m.get("DeviceName") == root_name), None)
        ebs = (root or {}).get("Ebs") or {}
        snapshot = self.ec2_backend.snapshots.get(ebs.get("SnapshotId") or "")
        if ebs.get("SnapshotId") and snapshot is None:
            raise InvalidSnapshotIdError()
        result = original_register(self)
        if snapshot is None:
            return result
        ami = self.ec2_backend.amis[result.result["ImageId"]]  # type: ignore[index]
        self.ec2_backend.snapshots.pop(ami.ebs_snapshot.id, None)  # moto's empty one, never used
        ami.ebs_snapshot = snapshot
        snapshot.from_ami = ami.id  # in use: DeleteSnapshot refuses it while the image exists
        snapshot_gib = snapshot.volume.size
        make_ebs(
            ami,
            {
                "VolumeSize": int(ebs.get("VolumeSize") or snapshot.volume.size),
                "VolumeType": ebs.get("VolumeType") or "gp3",
                "Encrypted": bool(snapshot.encrypted),
                "KmsKeyId": snapshot.kms_key_id if snapshot.encrypted else None,
            },
            root_name,
        )
        snapshot.volume.size = snapshot_gib  # the volume may be bigger than the snapshot, never smaller
        ami.architecture = self._get_param("Architecture") or "x86_64"
        ami.virtualization_type = self._get_param("VirtualizationType") or "hvm"
        ami.boot_mode = self._get_param("BootMode") or ami.boot_mode
        ami.ena_support = bool(self._get_bool_param("EnaSupport", False))
        ami.sriov_net_support = self._get_param("SriovNetSupport")
        return result

    AmisResponse.register_image = register_image  # type: ignore[method-assign]
