"""The local cloud's block store and disk images (baker.local.blocks, baker.local.disks): pure file work."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from baker.local import disks
from baker.local.blocks import BLOCK_SIZE, BlockStore, block_indexes


def test_a_child_reads_its_parents_blocks_and_lists_only_its_own_as_changed(tmp_path: Path) -> None:
    store = BlockStore(tmp_path)
    store.create("snap-base", 1)
    store.put("snap-base", 0, b"base-0")
    store.put("snap-base", 9, b"base-9")
    store.seal("snap-base", [0, 9])
    store.create("snap-app", 1, parent="snap-base")
    store.put("snap-app", 9, b"app-9")
    store.put("snap-app", 3, b"app-3")
    store.seal("snap-app", [9, 3])

    assert store.blocks("snap-app") == [0, 3, 9]
    assert store.read("snap-app", 0).startswith(b"base-0") and len(store.read("snap-app", 0)) == BLOCK_SIZE
    assert store.read("snap-app", 9).startswith(b"app-9")
    assert store.read("snap-base", 9).startswith(b"base-9")
    assert store.changed("snap-base", "snap-app") == [3, 9]
    assert store.changed(None, "snap-app") == [0, 3, 9]
    assert store.size("snap-app") == 1024**3
    assert (tmp_path / "snap-app.img").stat().st_blocks * 512 < 4 * BLOCK_SIZE, "sparse: only data takes room"

    store.copy("snap-app", "snap-copy")
    assert store.blocks("snap-copy") == [0, 3, 9]
    assert store.changed("snap-app", "snap-copy") == [], "unrelated: compared by content"
    assert store.delete("snap-app") and not (tmp_path / "snap-app.img").exists()
    assert store.read("snap-copy", 3).startswith(b"app-3")


def test_block_indexes_follow_the_data_of_a_sparse_file(tmp_path: Path) -> None:
    path = tmp_path / "v.img"
    with path.open("wb") as f:
        f.truncate(64 * BLOCK_SIZE)
        f.seek(5 * BLOCK_SIZE + 100)
        f.write(b"x" * (2 * BLOCK_SIZE))  # spans blocks 5, 6 and 7
    assert block_indexes(path) == [5, 6, 7]


def test_the_partition_table_is_gpt_as_partx_reads_it(tmp_path: Path) -> None:
    size = 64 * 1024**2
    primary, backup, offset, length = disks.partition_table(
        size, disk_guid=uuid.uuid4(), part_guid=uuid.uuid4()
    )
    disk = tmp_path / "d.img"
    with disk.open("wb") as f:
        f.truncate(size)
        f.write(primary)
        f.seek(size - len(backup))
        f.write(backup)
    assert disks.root_partition(disk) == (offset, length) == (1024**2, size - 2 * 1024**2)
    shown = subprocess.run(["partx", "--show", "-g", "-o", "NR,START,SECTORS,NAME", str(disk)],
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    assert shown == ["1", "2048", str(length // 512), "root"]

    with disk.open("r+b") as f:  # a damaged header is refused, not mounted
        f.seek(512 + 40)
        f.write(b"\1")
    with pytest.raises(disks.DiskError, match="CRC"):
        disks.root_partition(disk)
