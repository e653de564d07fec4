"""What every extension of the emulator shares: its knobs, its lock, the live instances' stores.

Kept apart from the extensions so that each of them (one module per gap, see
``baker.local.moto``) reads the shared state without importing another extension. ``INSTANCES``
is set by the emulator at start-up: read it as ``state.INSTANCES``, never ``from ... import``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from baker.local.health import HealthChecker
from baker.local.lb import LoadBalancers

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
#: what each snapshot holds (baker.local.blocks.BlockStore); the emulator sets it at start-up under
#: its state dir, else the first use makes one in a temp dir
BLOCKS: Any = None


def source_ami_id(region: str) -> str:
    """The source image's id: stable per region (like a public AMI), the same in every account."""
    return "ami-0" + hashlib.sha256(f"baker-local-debian-12/{region}".encode()).hexdigest()[:16]


def utcnow() -> datetime:
    """moto's clock (naive UTC), which its launch and refresh times use."""
    from moto.core import utils

    return utils.utcnow()


def is_live(instance: Any) -> bool:
    """Whether the instance boots its image here (else it is a record only)."""
    return bool(getattr(instance, "baker_live", False))


def block_store() -> Any:
    """The snapshots' block store (``state.BLOCKS``), made in a temp dir when none was set."""
    global BLOCKS
    if BLOCKS is None:
        import tempfile

        from baker.local.blocks import BlockStore

        BLOCKS = BlockStore(Path(tempfile.mkdtemp(prefix="baker-blocks-")))
    return BLOCKS


def holds_blocks(snapshot: Any) -> bool:
    """Whether the snapshot holds blocks here. The root snapshot of an AMI whose disk the build host
    committed (``images/<ami>/disk.img``), and the source image's (the cached root filesystem as a
    disk), take that disk as their content on first use."""
    store = block_store()
    if store.has(snapshot.id):
        return True
    ami_id = getattr(snapshot, "from_ami", None)
    if not ami_id or INSTANCES is None:
        return False
    region = getattr(snapshot.ec2_backend, "region_name", "")
    disk = INSTANCES.source_disk() if ami_id == source_ami_id(region) else INSTANCES.baked_disk(ami_id)
    if disk is None:
        return False
    store.adopt(snapshot.id, disk)
    return True


def root_disk(ami: Any) -> Path | None:
    """The blocks an instance of ``ami`` boots (its root snapshot's), or None: it stays a record.

    The Debian source image stays a record: its instances are Packer's, whose work the build host does.
    """
    if ami is None or INSTANCES is None or (ami.name == SOURCE_AMI_NAME and ami.owner_id == SOURCE_AMI_OWNER):
        return None
    snapshot = getattr(ami, "ebs_snapshot", None)
    if snapshot is None or not holds_blocks(snapshot):
        return None
    path: Path = block_store().path(snapshot.id)
    return path


def copy_blocks(source: Any, copy: Any) -> None:
    """The copy holds the source's blocks (CopySnapshot, and CopyImage's root snapshot)."""
    if source is not None and source.id != copy.id and holds_blocks(source):
        block_store().copy(source.id, copy.id)


def tag_map(resource: Any) -> dict[str, str]:
    """An EC2 resource's tags as a mapping (moto's describe_tags rows use lower-case keys)."""
    return {t["key"]: t["value"] for t in resource.get_tags()}
