"""Time sources: a lease clock for durations and a wall clock that may be skewed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Clock:
    """Two readings of one time source.

    ``now()`` is the lease clock: the host's time, used only for durations (leases,
    ages, first-seen instants), never compared with another machine's reading.
    ``wall()`` adds ``offset`` and stamps ``last_update``; the offset simulates a node
    whose wall clock is wrong, which changes its stamps but not the length of a second.
    """

    def __init__(self, offset: float = 0.0, source: Callable[[], float] = time.time) -> None:
        self.offset = offset
        self._source = source

    def now(self) -> float:
        """Return the lease-clock reading in seconds."""
        return self._source()

    def wall(self) -> float:
        """Return this node's (possibly skewed) unix time in seconds."""
        return self._source() + self.offset


class FakeClock(Clock):
    """A clock that moves only when told to; for tests and simulations."""

    def __init__(self, start: float = 1_700_000_000.0, offset: float = 0.0) -> None:
        self._t = start
        self._lock = threading.Lock()
        super().__init__(offset, lambda: self._t)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        with self._lock:
            self._t += seconds

    def set(self, t: float) -> None:
        """Jump to time ``t``."""
        with self._lock:
            self._t = t
