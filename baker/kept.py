"""Files baker keeps only to be quicker the next time (a bake's receipt, botocore's parsed data).

Each is written whole or not at all (a temp file beside it, then renamed over it), by any number
of processes at once; one that cannot be written is only a slower next time, never an error.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


def keep(target: Path, data: bytes) -> bool:
    """Write ``data`` to ``target`` atomically (its directory made when missing); False when it
    could not be written (nothing is left behind then)."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()
        return False
    return True
