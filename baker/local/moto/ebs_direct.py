"""The EBS direct APIs on real blocks (gap 19).

moto 5.2.5 keeps the blocks of a snapshot in memory, only for snapshots made by StartSnapshot
(any other snapshot, such as an AMI's root, answers HTTP 500), reports a block size of 512, ignores
ParentSnapshotId, Encrypted, KmsKeyArn, DataLength, MaxResults, NextToken and StartingBlockIndex,
takes every checksum at face value, completes whatever ChangedBlocksCount says, and the EC2
snapshot of a started snapshot is ``completed`` at once.

AWS (EBS direct APIs reference: StartSnapshot, PutSnapshotBlock, CompleteSnapshot,
ListSnapshotBlocks, ListChangedBlocks, GetSnapshotBlock; Amazon EBS User Guide, "Use EBS direct
APIs checksums to validate snapshot data"), as followed here:

- every snapshot's blocks are on disk (baker.local.blocks: a sparse file per snapshot), 512 KiB
  each (BlockSize 524288); an AMI's root snapshot answers like any other;
- StartSnapshot with ParentSnapshotId: the child starts with its parent's blocks and its parent's
  encryption (KmsKeyArn may name another key); ParentSnapshotId with Encrypted is a
  ValidationException; Encrypted without KmsKeyArn uses the default key; the EC2 snapshot is
  ``pending`` until CompleteSnapshot, then ``completed``;
- PutSnapshotBlock only to a ``pending`` snapshot, BlockIndex inside the volume, DataLength 524288,
  ChecksumAlgorithm SHA256 and a checksum that matches the data (base64 SHA-256), else
  ValidationException; the answer carries the checksum EBS computed;
- CompleteSnapshot with the ChangedBlocksCount of the blocks really written (else
  ValidationException), and the aggregated checksum (linear: SHA-256 of the concatenated block
  checksums in block order) when one is given;
- ListSnapshotBlocks and ListChangedBlocks in block order from StartingBlockIndex, at most
  MaxResults (100..10000) a page, NextToken to go on; ListChangedBlocks between a snapshot and its
  ancestor lists the blocks written since; GetSnapshotBlock needs a block token of that block and
  answers the data with its checksum;
- DeleteSnapshot frees the blocks; CopySnapshot copies them (a sparse copy, never read whole).

Not emulated: StartSnapshot's Timeout (a pending snapshot stays pending until completed or deleted)
and ClientToken, block tokens' expiry, the Progress header, KMS permissions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from datetime import timedelta
from typing import Any

from baker.local.blocks import BLOCK_SIZE, checksum
from baker.local.moto.state import block_store, copy_blocks, holds_blocks, utcnow

#: KMS key of an encrypted snapshot that names none (the account's default EBS key)
DEFAULT_KEY = "alias/aws/ebs"
MAX_RESULTS = 10000
#: the blocks written to each pending snapshot (snapshot id -> {index: checksum})
WRITTEN: dict[str, dict[int, str]] = {}
_write_lock = threading.Lock()


def _errors() -> tuple[type[Exception], type[Exception]]:
    from moto.core.exceptions import ServiceException

    class ValidationException(ServiceException):
        code = "ValidationException"

        def __init__(self, reason: str, message: str) -> None:
            super().__init__(message)
            self.reason = reason

    class ResourceNotFoundException(ServiceException):
        code = "ResourceNotFoundException"

        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.reason = "SNAPSHOT_NOT_FOUND"

    return ValidationException, ResourceNotFoundException


def block_token(snapshot_id: str, index: int) -> str:
    return base64.urlsafe_b64encode(f"{snapshot_id}/{index}".encode()).decode()


def _page_token(index: int) -> str:
    return base64.urlsafe_b64encode(f"next/{index}".encode()).decode()


def install() -> None:
    from moto.core.responses import ActionResult
    from moto.ebs.responses import EBSResponse
    from moto.ec2.models.elastic_block_store import EBSBackend as EC2Snapshots

    invalid, not_found = _errors()

    def snapshot_of(response: Any, snapshot_id: str | None) -> Any:
        snapshot = response.ebs_backend.ec2_backend.snapshots.get(snapshot_id or "")
        if snapshot is None:
            raise not_found(f"The snapshot '{snapshot_id}' does not exist.")
        return snapshot

    def readable(response: Any, snapshot_id: str | None) -> Any:
        """A snapshot to read; one whose content nobody made reads as an empty volume."""
        snapshot = snapshot_of(response, snapshot_id)
        holds_blocks(snapshot)
        return snapshot

    def integer(response: Any, name: str, default: int | None = None) -> int | None:
        value = response._get_param(name)
        if value is None:
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise invalid("INVALID_PARAMETER_VALUE", f"{name} must be an integer, not {value!r}") from None

    def page(response: Any, indexes: list[int]) -> tuple[list[int], str | None]:
        token = response._get_param("NextToken")
        start = integer(response, "StartingBlockIndex", 0) or 0
        if token:
            try:
                kind, _, value = base64.urlsafe_b64decode(token).decode().partition("/")
                start = int(value)
                if kind != "next":
                    raise ValueError(kind)
            except (ValueError, binascii.Error, UnicodeDecodeError):
                raise invalid("INVALID_PAGE_TOKEN", "The pagination token is not valid.") from None
        limit = integer(response, "MaxResults", MAX_RESULTS) or MAX_RESULTS
        if not 100 <= limit <= MAX_RESULTS:
            raise invalid("INVALID_PARAMETER_VALUE", f"MaxResults must be 100..{MAX_RESULTS}, not {limit}")
        rest = [i for i in indexes if i >= start]
        if len(rest) > limit:
            return rest[:limit], _page_token(rest[limit])
        return rest, None

    def volume_gib(snapshot: Any) -> int:
        return int(snapshot.volume.size)

    def start_snapshot(self: Any) -> Any:
        backend = self.ebs_backend.ec2_backend
        size = integer(self, "VolumeSize")
        parent_id = self._get_param("ParentSnapshotId")
        encrypted = self._get_param("Encrypted")
        kms_key = self._get_param("KmsKeyArn")
        if parent_id and encrypted is not None:
            both = "You can't specify ParentSnapshotId and Encrypted in the same request."
            raise invalid("INVALID_PARAMETER_VALUE", both)
        parent = readable(self, parent_id) if parent_id else None
        if parent is not None and parent.status != "completed":
            raise invalid("INVALID_SNAPSHOT_ID", f"The parent snapshot '{parent.id}' is not completed.")
        if size is None or size < 1 or size > 65536:
            raise invalid("INVALID_VOLUME_SIZE", f"VolumeSize must be 1..65536 GiB, not {size}")
        if parent is not None and size < volume_gib(parent):
            raise invalid(
                "INVALID_VOLUME_SIZE",
                f"VolumeSize {size} is smaller than the parent snapshot's {volume_gib(parent)} GiB.",
            )
        if parent is not None:
            encrypted = bool(parent.encrypted)
            kms_key = (kms_key or parent.kms_key_id) if encrypted else None
        elif encrypted:
            kms_key = kms_key or DEFAULT_KEY
        else:
            kms_key = None
        volume = backend.create_volume(size=size, zone_name=f"{self.region}a")
        snapshot = backend.create_snapshot(volume.id, self._get_param("Description") or "")
        backend.delete_volume(volume.id)
        snapshot.encrypted = bool(encrypted)
        snapshot.kms_key_id = kms_key
        snapshot.status = "pending"
        snapshot.baker_parent = parent.id if parent is not None else None
        for tag in self._get_param("Tags") or []:
            snapshot.add_tag(tag["Key"], tag.get("Value", ""))
        block_store().create(snapshot.id, size, parent.id if parent is not None else None)
        with _write_lock:
            WRITTEN[snapshot.id] = {}
        result = {
            "SnapshotId": snapshot.id,
            "OwnerId": snapshot.owner_id,
            "Status": "pending",
            "StartTime": snapshot.start_time,
            "VolumeSize": size,
            "BlockSize": BLOCK_SIZE,
            "Tags": [{"Key": t["key"], "Value": t["value"]} for t in snapshot.get_tags()],
            "Description": snapshot.description,
            "ParentSnapshotId": snapshot.baker_parent,
            "KmsKeyArn": kms_key,
        }
        return ActionResult({k: v for k, v in result.items() if v is not None})

    def put_snapshot_block(self: Any) -> Any:
        snapshot = snapshot_of(self, self._get_param("SnapshotId"))
        if snapshot.status != "pending" or snapshot.id not in WRITTEN:
            raise invalid("INVALID_SNAPSHOT_ID", f"The snapshot '{snapshot.id}' is not pending.")
        index = integer(self, "BlockIndex")
        blocks = volume_gib(snapshot) * 1024**3 // BLOCK_SIZE
        if index is None or not 0 <= index < blocks:
            raise invalid("INVALID_BLOCK", f"BlockIndex {index} is outside the volume (0..{blocks - 1}).")
        data = self.body if isinstance(self.body, bytes) else bytes(self.body or b"")
        length = integer(self, "DataLength")
        if length != BLOCK_SIZE or len(data) != BLOCK_SIZE:
            raise invalid(
                "INVALID_PARAMETER_VALUE",
                f"DataLength must be {BLOCK_SIZE} (got {length}, and {len(data)} bytes of data).",
            )
        if self._get_param("ChecksumAlgorithm") != "SHA256":
            raise invalid("INVALID_PARAMETER_VALUE", "ChecksumAlgorithm must be SHA256.")
        computed = checksum(data)
        if self._get_param("Checksum") != computed:
            raise invalid("INVALID_PARAMETER_VALUE", "The value of the checksum does not match the data.")
        block_store().put(snapshot.id, index, data)
        with _write_lock:
            WRITTEN[snapshot.id][index] = computed
        return ActionResult({"Checksum": computed, "ChecksumAlgorithm": "SHA256"})

    def complete_snapshot(self: Any) -> Any:
        snapshot = snapshot_of(self, self._get_param("SnapshotId"))
        if snapshot.status == "completed" and snapshot.id not in WRITTEN:
            return ActionResult({"Status": "completed"})
        written = WRITTEN.get(snapshot.id)
        if written is None:
            raise invalid("INVALID_SNAPSHOT_ID", f"The snapshot '{snapshot.id}' is not pending.")
        count = integer(self, "ChangedBlocksCount")
        if count != len(written):
            raise invalid(
                "INVALID_PARAMETER_VALUE",
                f"ChangedBlocksCount is {count} but {len(written)} block(s) were written.",
            )
        aggregate = self._get_param("Checksum")
        if aggregate:
            linear = "".join(written[i] for i in sorted(written))
            if aggregate != base64.b64encode(hashlib.sha256(linear.encode()).digest()).decode():
                raise invalid("INVALID_PARAMETER_VALUE", "The aggregated checksum does not match the blocks.")
        block_store().seal(snapshot.id, list(written))
        with _write_lock:
            WRITTEN.pop(snapshot.id, None)
        snapshot.status = "completed"
        return ActionResult({"Status": "completed"})

    def listing(snapshot: Any) -> dict[str, Any]:
        return {
            "VolumeSize": volume_gib(snapshot),
            "BlockSize": BLOCK_SIZE,
            "ExpiryTime": utcnow() + timedelta(days=7),
        }

    def list_snapshot_blocks(self: Any) -> Any:
        snapshot = readable(self, self._get_param("SnapshotId"))
        indexes, token = page(self, block_store().blocks(snapshot.id))
        result = {
            "Blocks": [{"BlockIndex": i, "BlockToken": block_token(snapshot.id, i)} for i in indexes],
            **listing(snapshot),
        }
        if token:
            result["NextToken"] = token
        return ActionResult(result)

    def list_changed_blocks(self: Any) -> Any:
        second = readable(self, self._get_param("SecondSnapshotId"))
        first_id = self._get_param("FirstSnapshotId")
        first = readable(self, first_id) if first_id else None
        store = block_store()
        changed = store.changed(first.id if first is not None else None, second.id)
        indexes, token = page(self, changed)
        have = set(store.blocks(first.id)) if first is not None else set()
        blocks = []
        for i in indexes:
            entry = {"BlockIndex": i, "SecondBlockToken": block_token(second.id, i)}
            if first is not None and i in have:
                entry["FirstBlockToken"] = block_token(first.id, i)
            blocks.append(entry)
        result = {"ChangedBlocks": blocks, **listing(second)}
        if token:
            result["NextToken"] = token
        return ActionResult(result)

    def get_snapshot_block(self: Any) -> Any:
        snapshot = readable(self, self._get_param("SnapshotId"))
        index = integer(self, "BlockIndex")
        token = self._get_param("BlockToken") or ""
        try:
            named, _, at = base64.urlsafe_b64decode(token).decode().partition("/")
            valid = int(at) == index and named.startswith("snap-")
        except (ValueError, binascii.Error, UnicodeDecodeError):
            valid = False
        if not valid or index is None:
            raise invalid("INVALID_BLOCK_TOKEN", "The block token is not valid for this block.")
        data = block_store().read(snapshot.id, index)
        headers = {
            "Content-Type": "application/octet-stream",
            "x-amz-Data-Length": str(BLOCK_SIZE),
            "x-amz-Checksum": checksum(data),
            "x-amz-Checksum-Algorithm": "SHA256",
        }
        return 200, headers, data  # the block as the body, as EBS sends it (moto's serializer copies it)

    EBSResponse.start_snapshot = start_snapshot  # type: ignore[method-assign]
    EBSResponse.put_snapshot_block = put_snapshot_block  # type: ignore[method-assign]
    EBSResponse.complete_snapshot = complete_snapshot  # type: ignore[method-assign]
    EBSResponse.list_snapshot_blocks = list_snapshot_blocks  # type: ignore[method-assign]
    EBSResponse.list_changed_blocks = list_changed_blocks  # type: ignore[method-assign]
    EBSResponse.get_snapshot_block = get_snapshot_block  # type: ignore[method-assign]

    original_delete = EC2Snapshots.delete_snapshot

    def delete_snapshot(self: Any, snapshot_id: str) -> Any:
        snapshot = original_delete(self, snapshot_id)
        block_store().delete(snapshot_id)  # the blocks are freed with the snapshot
        with _write_lock:
            WRITTEN.pop(snapshot_id, None)
        return snapshot

    EC2Snapshots.delete_snapshot = delete_snapshot  # type: ignore[method-assign]

    original_copy = EC2Snapshots.copy_snapshot

    def copy_snapshot(
        self: Any, source_snapshot_id: str, source_region: str, description: str, kms_key_id: str | None
    ) -> Any:
        from moto.ec2.models import ec2_backends

        copy = original_copy(self, source_snapshot_id, source_region, description, kms_key_id)
        source = ec2_backends[self.account_id][source_region].snapshots.get(source_snapshot_id)
        copy_blocks(source, copy)
        return copy

    EC2Snapshots.copy_snapshot = copy_snapshot  # type: ignore[method-assign]
