"""The clock the waits and the deploy lock read: injected, so that tests move time instead of
waiting for it.

``monotonic`` and ``sleep`` measure and spend the waits (the health wait's deadline and polls, a
blue/green step); ``wall`` is seconds since the epoch, what the deploy lock's lease is written in
(every runner reads it, so it cannot be a monotonic count of one process).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Clock:
    """Monotonic time, sleeping and the wall clock; the real ones unless a test hands in others."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], float] = time.time
