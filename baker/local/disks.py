"""Disk images as an AMI's root snapshot holds them: GPT, one ext4 root partition (as Debian's cloud
images are), made from a directory tree without mounting anything writable.

The partition table is written here (UEFI Specification 2.10, section 5: a protective MBR, the GPT
header at LBA 1 with its entries from LBA 2, the backup entries and header at the end of the disk,
CRC32 over each); ``mke2fs -d`` fills the partition from the tree in place (``-E offset``). A disk
is mounted read-only through a loop device over its partition (``mount -o loop,offset,sizelimit``:
the loop device goes with the unmount).
"""

from __future__ import annotations

import logging
import os
import struct
import time
import uuid
import zlib
from pathlib import Path

from baker import runner
from baker.errors import BakerError

log = logging.getLogger("baker")

SECTOR = 512
GIB = 1024**3
#: the root partition starts at 1 MiB, as partitioning tools align it
FIRST_LBA = 2048
ENTRIES = 128
ENTRY_SIZE = 128
ENTRY_SECTORS = ENTRIES * ENTRY_SIZE // SECTOR
#: "Linux filesystem data"
LINUX_FS = uuid.UUID("0fc63daf-8483-4772-8e79-3d69d8477de4")
ROOT_LABEL = "root"
#: the root volume of an image the local cloud makes (Debian's AMIs have 8 GiB)
DEFAULT_VOLUME_GIB = 8


class DiskError(BakerError):
    exit_code = 3


def _header(
    disk_guid: uuid.UUID, my_lba: int, alternate_lba: int, entries_lba: int, last_lba: int, entries_crc: int
) -> bytes:
    fields = (b"EFI PART", 0x00010000, 92, 0, 0, my_lba, alternate_lba, 34, last_lba - 33,
              disk_guid.bytes_le, entries_lba, ENTRIES, ENTRY_SIZE, entries_crc)  # fmt: skip
    layout = "<8sIIIIQQQQ16sQIII"
    crc = zlib.crc32(struct.pack(layout, *fields))
    return struct.pack(layout, *fields[:3], crc, *fields[4:]).ljust(SECTOR, b"\0")


def partition_table(
    size: int, *, disk_guid: uuid.UUID, part_guid: uuid.UUID
) -> tuple[bytes, bytes, int, int]:
    """(the first 34 sectors, the last 33 sectors, partition start byte, partition length) of a disk
    of ``size`` bytes with one Linux partition from 1 MiB to the last aligned MiB."""
    last_lba = size // SECTOR - 1
    first, end = FIRST_LBA, ((last_lba - 33 + 1) // FIRST_LBA) * FIRST_LBA - 1
    name = ROOT_LABEL.encode("utf-16-le").ljust(72, b"\0")
    entry = struct.pack("<16s16sQQQ72s", LINUX_FS.bytes_le, part_guid.bytes_le, first, end, 0, name)
    entries = entry.ljust(ENTRIES * ENTRY_SIZE, b"\0")
    crc = zlib.crc32(entries)
    mbr = bytearray(SECTOR)
    mbr[446:462] = struct.pack("<B3sB3sII", 0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1,
                               min(last_lba, 0xFFFFFFFF))  # fmt: skip
    mbr[510:512] = b"\x55\xaa"
    primary = bytes(mbr) + _header(disk_guid, 1, last_lba, 2, last_lba, crc) + entries
    backup_entries_lba = last_lba - ENTRY_SECTORS
    backup = entries + _header(disk_guid, last_lba, 1, backup_entries_lba, last_lba, crc)
    return primary, backup, first * SECTOR, (end - first + 1) * SECTOR


def root_partition(disk: Path) -> tuple[int, int]:
    """(start byte, length) of the disk's first GPT partition, checked against the header's CRCs."""
    with disk.open("rb") as f:
        f.seek(SECTOR)
        header = f.read(92)
        if header[:8] != b"EFI PART":
            raise DiskError(f"{disk} has no GPT partition table")
        fields = list(struct.unpack("<8sIIIIQQQQ16sQIII", header))
        crc, fields[3] = fields[3], 0
        if zlib.crc32(struct.pack("<8sIIIIQQQQ16sQIII", *fields)) != crc:
            raise DiskError(f"{disk}: the GPT header's CRC does not match")
        f.seek(fields[10] * SECTOR)
        entries = f.read(fields[11] * fields[12])
    if zlib.crc32(entries) != fields[13]:
        raise DiskError(f"{disk}: the GPT entries' CRC does not match")
    _type, _guid, first, last = struct.unpack("<16s16sQQ", entries[:48])
    if first == 0:
        raise DiskError(f"{disk} has no partition")
    return first * SECTOR, (last - first + 1) * SECTOR


def make_disk(tree: Path, dest: Path, *, volume_gib: int = DEFAULT_VOLUME_GIB) -> float:
    """A sparse disk image at ``dest``: GPT, one ext4 partition holding ``tree``; returns seconds."""
    started = time.monotonic()
    size = volume_gib * GIB
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        guids = {"disk_guid": uuid.uuid4(), "part_guid": uuid.uuid4()}
        primary, backup, offset, length = partition_table(size, **guids)
        with tmp.open("wb") as f:
            f.truncate(size)
            f.write(primary)
            f.seek(size - len(backup))
            f.write(backup)
        argv = ["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(tree),
                "-E", f"offset={offset},lazy_itable_init=1,lazy_journal_init=1",
                str(tmp), f"{length // 1024}k"]  # fmt: skip
        runner.output(argv, stage="disks", timeout=600)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    log.info("disk image %s: GPT + ext4 of %s in %.1fs", dest.name, tree, seconds)
    return seconds


def mount_argv(disk: Path, target: Path) -> list[str]:
    """Mount the disk's root partition read-only (no journal replay: the image is never written)."""
    offset, length = root_partition(disk)
    options = f"ro,noload,loop,offset={offset},sizelimit={length}"
    return ["mount", "-t", "ext4", "-o", options, str(disk), str(target)]
