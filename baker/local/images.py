"""The image store: the content of each AMI baked in this local cloud, under ``images/<ami-id>/``.

``root/`` is what provisioning wrote (a build session's overlay upper dir), ``image.json`` names the
root filesystem it was baked on, ``disk.img`` is the whole root volume (GPT, an ext4 partition of
the root filesystem with ``root/`` over it: baker.local.disks), which the emulator takes as the
content of the AMI's root snapshot (baker.local.blocks), the snapshot instances boot from. Images
are never written to, and a copy (another region, account, or a promotion) is hard links. The
store follows the emulator: an AMI deregistered there loses its content here (baker.local.instances
removes it once no instance boots from it).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from baker import runner
from baker.errors import UsageError
from baker.local import kernel
from baker.local.rootfs import now, tree_size


def check_ami_id(ami_id: str) -> None:
    if not re.fullmatch(r"ami-[0-9a-zA-Z]{1,32}", ami_id or ""):
        raise UsageError(f"not an AMI id: {ami_id!r}")


#: the root volume of an image, as its root snapshot holds it (baker.local.disks)
DISK = "disk.img"


class ImageStore:
    def __init__(self, images_dir: Path) -> None:
        self.dir = Path(images_dir)

    def root(self, ami_id: str) -> Path | None:
        """What provisioning wrote for that AMI, or None when unknown here."""
        check_ami_id(ami_id)
        root = self.dir / ami_id / "root"
        return root if root.is_dir() else None

    def disk(self, ami_id: str) -> Path | None:
        """The AMI's root volume as a disk image (GPT, one ext4 partition), or None."""
        check_ami_id(ami_id)
        disk = self.dir / ami_id / DISK
        return disk if disk.is_file() else None

    def meta(self, ami_id: str) -> dict[str, Any]:
        try:
            return dict(json.loads((self.dir / ami_id / "image.json").read_text()))
        except (OSError, ValueError):
            return {}

    def add(self, ami_id: str, content: Path, meta: dict[str, Any]) -> Path:
        """Move ``content`` (a directory of ours on the same filesystem) in as the AMI's root."""
        dest = self._new(ami_id)
        tmp = self._tmp(ami_id)
        os.rename(content, tmp / "root")
        return self._finish(tmp, dest, meta)

    def copy(self, source_ami_id: str, ami_id: str) -> Path:
        """The same content under another AMI id (hard links)."""
        source = self.root(source_ami_id)
        if source is None:
            raise UsageError(f"the local build host holds no image content for {source_ami_id}")
        dest = self._new(ami_id)
        tmp = self._tmp(ami_id)
        runner.output(["cp", "-a", "--link", str(source), str(tmp / "root")], stage="images")
        disk = self.disk(source_ami_id)
        if disk is not None:  # never written once made: one inode serves both
            os.link(disk, tmp / DISK)
        meta = self.meta(source_ami_id)
        meta["copy_of"] = source_ami_id
        return self._finish(tmp, dest, meta)

    def remove(self, ami_id: str) -> None:
        check_ami_id(ami_id)
        kernel.remove_tree(self.dir / ami_id, stage="images")

    def list(self) -> list[dict[str, Any]]:
        images = []
        if self.dir.is_dir():
            for d in sorted(self.dir.iterdir()):
                if d.name.startswith(".") or not (d / "image.json").is_file():
                    continue
                images.append(
                    {
                        "ami_id": d.name,
                        "path": str(d / "root"),
                        "size_bytes": tree_size(d / "root"),
                        "committed_at": self.meta(d.name).get("committed_at"),
                    }
                )
        return images

    def _new(self, ami_id: str) -> Path:
        check_ami_id(ami_id)
        dest = self.dir / ami_id
        if dest.exists():
            raise UsageError(f"the local build host already holds image content for {ami_id}")
        return dest

    def _tmp(self, ami_id: str) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{ami_id}.tmp-{os.getpid()}"
        kernel.remove_tree(tmp, stage="images")
        tmp.mkdir()
        return tmp

    @staticmethod
    def _finish(tmp: Path, dest: Path, meta: dict[str, Any]) -> Path:
        meta.update(ami_id=dest.name, committed_at=now())
        (tmp / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
        os.rename(tmp, dest)
        return dest / "root"
