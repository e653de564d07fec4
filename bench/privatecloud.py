"""What every bench that talks to the local cloud needs: a loopback-only network namespace of its
own, a local cloud in a temp dir, and a copy of the project to change freely; all of it removed
afterwards (``keep`` leaves the temp dir for a look at the logs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from baker.local import cloud, netns  # noqa: E402


@contextlib.contextmanager
def private_cloud(
    tag: str, *, parts: tuple[str, ...] = ("environments",), keep: bool = False
) -> Iterator[tuple[Path, Path]]:
    """(state dir of the running cloud, project root with baker.yml and ``parts`` copied)."""
    if os.geteuid() != 0:
        raise SystemExit(f"bench_{tag} needs root (network namespace)")
    name = f"baker-bench-{tag}-{os.getpid()}"
    netns.create(name)
    netns.enter(name)
    tmp = Path(tempfile.mkdtemp(prefix=f"baker-bench-{tag}-"))
    state = tmp / "cloud"
    os.environ["BAKER_LOCAL_DIR"] = str(state)
    try:
        cloud.up(state, netns_name=name, rootfs=False)
        root = tmp / "project"
        root.mkdir()
        shutil.copy(REPO / "baker.yml", root / "baker.yml")
        for part in parts:
            shutil.copytree(REPO / part, root / part)
        yield state, root
    finally:
        cloud.down(state)
        netns.delete(name)
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
