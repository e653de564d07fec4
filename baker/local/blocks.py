"""The local cloud's block store: what each EBS snapshot holds, as a sparse file on disk.

``<dir>/<snapshot-id>.img`` is the snapshot's volume, byte for byte (its apparent size is the
volume's size, only the blocks that hold data take room), ``<snapshot-id>.json`` what the EBS
direct APIs need besides the bytes: the parent snapshot and the blocks written to this snapshot
itself (None when the whole file was written at once: a baked disk, a copy). Blocks are 512 KiB as
EBS's are (EBS direct APIs reference, "BlockSize": 524288); nothing is ever read into memory whole.

A child (StartSnapshot with ParentSnapshotId) starts as a sparse copy of its parent's file, so it
reads its parent's blocks plus its own; the blocks it changed are its own written set. The store
is driven by the emulator (baker.local.moto.ebs_direct) and read by the live instances
(baker.local.disks mounts a snapshot's file read-only).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from baker import runner
from baker.errors import UsageError

BLOCK_SIZE = 524288
GIB = 1024**3


def checksum(data: bytes) -> str:
    """The EBS direct APIs' checksum of a block: SHA-256, base64."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def data_extents(path: Path) -> Iterator[tuple[int, int]]:
    """(start, end) byte ranges of a sparse file that hold data (SEEK_DATA / SEEK_HOLE)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        offset = 0
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after offset
                return
            end = os.lseek(fd, start, os.SEEK_HOLE)
            yield start, end
            offset = end
    finally:
        os.close(fd)


def block_indexes(path: Path) -> list[int]:
    """The 512 KiB blocks of a sparse file that hold data, in order."""
    found: list[int] = []
    for start, end in data_extents(path):
        first, last = start // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        if found and found[-1] >= first:
            first = found[-1] + 1
        found.extend(range(first, last + 1))
    return found


def sparse_copy(source: Path, dest: Path) -> None:
    """A copy that keeps holes (a reflink where the filesystem has them): no read into memory."""
    runner.output(["cp", "--sparse=always", "--reflink=auto", str(source), str(dest)], stage="blocks")


class BlockStore:
    """The snapshots' content under one directory (the local cloud's ``snapshots/``)."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def path(self, snapshot_id: str) -> Path:
        if not snapshot_id.startswith("snap-") or "/" in snapshot_id:
            raise UsageError(f"not a snapshot id: {snapshot_id!r}")
        return self.dir / f"{snapshot_id}.img"

    def has(self, snapshot_id: str) -> bool:
        return self.path(snapshot_id).is_file()

    def meta(self, snapshot_id: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self.path(snapshot_id).with_suffix(".json").read_text()))
        except (OSError, ValueError):
            return {}

    def _write_meta(self, snapshot_id: str, meta: dict[str, Any]) -> None:
        target = self.path(snapshot_id).with_suffix(".json")
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta) + "\n")
        os.replace(tmp, target)

    # -- making content

    def create(self, snapshot_id: str, volume_gib: int, parent: str | None = None) -> Path:
        """An empty volume of that size, or a copy of ``parent``'s blocks (StartSnapshot)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(snapshot_id)
        if parent is not None and self.has(parent):
            sparse_copy(self.path(parent), path)
        with path.open("ab") as f:
            f.truncate(max(volume_gib * GIB, f.tell()))
        self._write_meta(snapshot_id, {"parent": parent, "written": []})
        return path

    def adopt(self, snapshot_id: str, disk: Path) -> Path:
        """``disk`` (a whole volume image) as the snapshot's content: a hard link when it can be."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(snapshot_id)
        tmp = path.with_suffix(".img.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(disk, tmp)
        except OSError:
            sparse_copy(disk, tmp)
        os.replace(tmp, path)
        self._write_meta(snapshot_id, {"parent": None, "written": None})
        return path

    def copy(self, source_id: str, snapshot_id: str) -> Path:
        """Another snapshot with the same blocks (CopySnapshot, CopyImage): a full snapshot."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(snapshot_id)
        tmp = path.with_suffix(".img.tmp")
        sparse_copy(self.path(source_id), tmp)
        os.replace(tmp, path)
        self._write_meta(snapshot_id, {"parent": None, "written": None})
        return path

    def put(self, snapshot_id: str, index: int, data: bytes) -> None:
        """Write one block (PutSnapshotBlock); short data is padded with zeros to the block size."""
        fd = os.open(self.path(snapshot_id), os.O_WRONLY)
        try:
            os.pwrite(fd, data.ljust(BLOCK_SIZE, b"\0"), index * BLOCK_SIZE)
        finally:
            os.close(fd)

    def seal(self, snapshot_id: str, written: list[int]) -> None:
        """Record the blocks written to this snapshot itself (CompleteSnapshot)."""
        meta = self.meta(snapshot_id)
        meta["written"] = sorted(set(written))
        self._write_meta(snapshot_id, meta)

    def delete(self, snapshot_id: str) -> bool:
        """Free the snapshot's blocks (DeleteSnapshot); False when it held none."""
        path = self.path(snapshot_id)
        path.with_suffix(".json").unlink(missing_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    # -- reading

    def size(self, snapshot_id: str) -> int:
        return self.path(snapshot_id).stat().st_size

    def read(self, snapshot_id: str, index: int) -> bytes:
        """One block (zeros where nothing was written, or the snapshot holds no blocks here)."""
        if not self.has(snapshot_id):
            return bytes(BLOCK_SIZE)
        fd = os.open(self.path(snapshot_id), os.O_RDONLY)
        try:
            return os.pread(fd, BLOCK_SIZE, index * BLOCK_SIZE).ljust(BLOCK_SIZE, b"\0")
        finally:
            os.close(fd)

    def blocks(self, snapshot_id: str) -> list[int]:
        """The blocks that hold data: the parent's and this snapshot's own (none for a record)."""
        return block_indexes(self.path(snapshot_id)) if self.has(snapshot_id) else []

    def lineage(self, snapshot_id: str) -> list[str]:
        """The snapshot, its parent, its parent's parent ... (as far as the store knows them)."""
        chain = [snapshot_id]
        while True:
            parent = self.meta(chain[-1]).get("parent")
            if not parent or parent in chain:
                return chain
            chain.append(parent)

    def changed(self, first: str | None, second: str) -> list[int]:
        """The blocks of ``second`` that differ from ``first`` (all of its blocks when None).

        Along a lineage (``first`` an ancestor of ``second``) these are the blocks written since,
        as EBS answers from its own records; otherwise the blocks whose bytes differ.
        """
        if first is None:
            return self.blocks(second)
        chain = self.lineage(second)
        if first in chain:
            own: set[int] = set()
            for snap in chain[: chain.index(first)]:
                written = self.meta(snap).get("written")
                if written is None:  # written whole: compare the bytes instead
                    break
                own.update(written)
            else:
                return sorted(own)
        return [
            i
            for i in sorted(set(self.blocks(first)) | set(self.blocks(second)))
            if self.read(first, i) != self.read(second, i)
        ]
