"""A snapshot's blocks through the EBS direct APIs: read a base to a file, write a child of it.

AWS documents (EBS direct APIs, API reference and user guide "Use EBS direct APIs"): blocks are
524288 bytes; ListSnapshotBlocks returns only the blocks that hold written data, in order, paged
by NextToken; GetSnapshotBlock answers with the block's SHA-256 checksum (base64); a snapshot
started with StartSnapshot is ``pending`` until CompleteSnapshot, and with ParentSnapshotId it
starts with its parent's blocks, so only the changed ones are put. ParentSnapshotId and Encrypted
may not be in one request: a child of an encrypted parent is encrypted, with KmsKeyArn when given.

A fetched snapshot is kept on disk by snapshot id (a snapshot's content never changes), so the
nightly base is fetched once per runner; the file is sparse: the blocks the API does not list
stay holes.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baker.aws import Client
from baker.errors import AWSError, ToolError

log = logging.getLogger("baker")

#: the EBS direct APIs' block size
BLOCK = 524288
GIB = 1 << 30
#: parallel GetSnapshotBlock / PutSnapshotBlock calls (AWS: "run API requests concurrently")
WORKERS = 8
_COMPLETE = ".complete"


def _parallel(work: Callable[[Any], int], items: list[Any]) -> list[int]:
    """``work`` over ``items`` on WORKERS threads; on an error or an interrupt the calls not yet
    begun are dropped and the running ones waited for, so nothing writes after we return."""
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    try:
        results = list(pool.map(work, items))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def checksum(data: bytes) -> str:
    """SHA-256 of a block, base64: the ChecksumAlgorithm SHA256 of the EBS direct APIs."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass(frozen=True)
class Fetched:
    path: Path
    volume_size: int
    blocks: int
    bytes_read: int
    cached: bool


def _listed(ebs: Client, snapshot_id: str) -> Iterator[tuple[int, str, int]]:
    """(index, token, volume GiB) of every written block, NextToken followed."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"SnapshotId": snapshot_id, "MaxResults": 10000}
        if token:
            kwargs["NextToken"] = token
        page = ebs.list_snapshot_blocks(**kwargs)
        for block in page.get("Blocks", []):
            yield block["BlockIndex"], block["BlockToken"], page["VolumeSize"]
        token = page.get("NextToken")
        if not token:
            return


def cache_dir() -> Path:
    """Where fetched snapshots are kept: $BAKER_CACHE_DIR or ~/.cache/baker, then snapshots/."""
    return Path(os.environ.get("BAKER_CACHE_DIR") or Path.home() / ".cache" / "baker") / "snapshots"


def forget(cache_dir: Path, snapshot_ids: Iterable[str]) -> list[str]:
    """Remove the fetched copies of these snapshots from ``cache_dir`` (snapshots that no longer
    exist: a local cloud's, when it goes); the ids whose copy was there."""
    gone = []
    for snapshot_id in snapshot_ids:
        path = cache_dir / f"{snapshot_id}.img"
        done = path.with_name(path.name + _COMPLETE)
        if path.exists() or done.exists():
            done.unlink(missing_ok=True)  # first: a copy without its marker is never reused
            path.unlink(missing_ok=True)
            gone.append(snapshot_id)
    return gone


def fetch(ebs: Client, snapshot_id: str, cache_dir: Path, *, volume_size: int) -> Fetched:
    """The snapshot's whole volume as a sparse file under ``cache_dir``, each block's checksum
    checked. A file fetched before is reused as it is (``cached``)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{snapshot_id}.img"
    done = path.with_name(path.name + _COMPLETE)
    if path.is_file() and done.is_file():
        return Fetched(path, volume_size, int(done.read_text() or 0), 0, cached=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    listed = list(_listed(ebs, snapshot_id))
    size = listed[0][2] if listed else volume_size
    read = 0
    try:
        with partial.open("wb") as fh:
            fh.truncate(size * GIB)
        fd = os.open(partial, os.O_WRONLY)
        try:

            def one(item: tuple[int, str, int]) -> int:
                index, token, _ = item
                got = ebs.get_snapshot_block(SnapshotId=snapshot_id, BlockIndex=index, BlockToken=token)
                data = got["BlockData"].read()
                if got.get("Checksum") and checksum(data) != got["Checksum"]:
                    raise ToolError(
                        f"block {index} of {snapshot_id} does not match its SHA-256 checksum", tool="ebs"
                    )
                os.pwrite(fd, data, index * BLOCK)
                return len(data)

            read = sum(_parallel(one, listed))
        finally:
            os.close(fd)
        partial.rename(path)
        done.write_text(f"{len(listed)}\n")
    finally:
        partial.unlink(missing_ok=True)
    log.info("fetched %s: %d blocks, %d MiB", snapshot_id, len(listed), read >> 20)
    return Fetched(path, size, len(listed), read, cached=False)


def data_blocks(path: Path) -> set[int]:
    """Indexes of the blocks of a sparse file that hold data (SEEK_DATA / SEEK_HOLE): a hole reads
    as zeros, so a block that is a hole in both files is the same in both."""
    found: set[int] = set()
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        offset = 0
        while offset < end:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after offset
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            found.update(range(start // BLOCK, (stop - 1) // BLOCK + 1))
            offset = stop
    finally:
        os.close(fd)
    return found


def changed_blocks(base: Path, work: Path) -> list[int]:
    """Indexes of the blocks of ``work`` that differ from ``base`` (same size); only the blocks
    that hold data in either file are read."""
    changed: list[int] = []
    a, b = os.open(base, os.O_RDONLY), os.open(work, os.O_RDONLY)
    try:
        for index in sorted(data_blocks(base) | data_blocks(work)):
            if os.pread(a, BLOCK, index * BLOCK) != os.pread(b, BLOCK, index * BLOCK):
                changed.append(index)
    finally:
        os.close(a)
        os.close(b)
    return changed


@dataclass
class Upload:
    """A child snapshot being written: started, filled, completed, or deleted when it fails."""

    ebs: Client
    ec2: Client
    parent: str
    volume_size: int
    snapshot_id: str | None = None
    completed: bool = False
    bytes_written: int = 0

    def start(self, *, tags: Mapping[str, str], description: str, kms_key_arn: str | None) -> str:
        kwargs: dict[str, Any] = {
            "VolumeSize": self.volume_size,
            "ParentSnapshotId": self.parent,
            "Description": description[:255],
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            "ClientToken": uuid.uuid4().hex,
            "Timeout": 60,
        }
        if kms_key_arn:
            kwargs["KmsKeyArn"] = kms_key_arn
        self.snapshot_id = self.ebs.start_snapshot(**kwargs)["SnapshotId"]
        log.info("started %s, a child of %s", self.snapshot_id, self.parent)
        return self.snapshot_id

    def put(
        self, path: Path, indexes: Iterable[int], *, progress: Callable[[int], None] | None = None
    ) -> int:
        """Write the blocks ``indexes`` of ``path`` in parallel; returns their count."""
        assert self.snapshot_id is not None
        fd = os.open(path, os.O_RDONLY)
        try:

            def one(index: int) -> int:
                data = os.pread(fd, BLOCK, index * BLOCK).ljust(BLOCK, b"\0")
                self.ebs.put_snapshot_block(
                    SnapshotId=self.snapshot_id,
                    BlockIndex=index,
                    BlockData=data,
                    DataLength=len(data),
                    Checksum=checksum(data),
                    ChecksumAlgorithm="SHA256",
                )
                if progress is not None:
                    progress(index)
                return len(data)

            sizes = _parallel(one, list(indexes))
        finally:
            os.close(fd)
        self.bytes_written += sum(sizes)
        return len(sizes)

    def complete(self, changed: int) -> None:
        assert self.snapshot_id is not None
        self.ebs.complete_snapshot(SnapshotId=self.snapshot_id, ChangedBlocksCount=changed)
        self.ec2.get_waiter("snapshot_completed").wait(
            SnapshotIds=[self.snapshot_id], WaiterConfig={"Delay": 2, "MaxAttempts": 300}
        )
        self.completed = True

    def discard(self) -> str | None:
        """Delete the snapshot this upload started (any state); returns what could not be deleted."""
        if self.snapshot_id is None:
            return None
        try:
            self.ec2.delete_snapshot(SnapshotId=self.snapshot_id)
        except AWSError as exc:
            log.warning("could not delete %s: %s", self.snapshot_id, exc.message)
            return self.snapshot_id
        log.warning("deleted the unfinished snapshot %s", self.snapshot_id)
        return None
