"""A node's local health score: evidence that it is itself the slow one (Lifeguard's awareness).

A starved node (CPU, scheduler, network) times out its own exchanges and pings and
then blames healthy peers. Lifeguard (Dadgar et al., 2018; hashicorp/memberlist's
``awareness``) lets a node notice this from its own vantage point and hold back. The
score runs from 0 (healthy) to ``top``:

* it rises by one when the node has evidence that IT is slow: a gossip round that
  started more than ``LATE`` of an interval past its tick (woken late, or the round
  before overran it), a probe wave in which no helper answered at all, a refutation of
  its own mark-down;
* it falls by one on evidence that it works: a round started on time whose exchanges
  all succeeded, a probe wave in which a helper or the suspect answered.

While the score is above 0 the detector (``liveness``) scales its ping and probe
timeouts by ``score + 1`` (``scale``), marks no one down (a wave that would is
unsettled), and, as a helper, never answers "not alive" to a probe: a denial from a
node that cannot trust its own timeouts would be a false confirmation.

Pure: the caller passes in how late a round was and what a wave's calls returned;
thread-safe, since rounds, waves and refutations end on different threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

LATE = 0.5
"""Share of an interval a round may start past its tick before it counts as evidence of slowness."""


class Awareness:
    """A score of local health, 0 (healthy) to ``top``, moved by evidence (see the module)."""

    def __init__(self, top: int = 8) -> None:
        self.top = top  # highest score; 0 turns the score off (it stays 0)
        self._score = 0
        self._lock = threading.Lock()

    @property
    def score(self) -> int:
        """Return the score now: 0 is healthy."""
        return self._score

    def healthy(self) -> bool:
        """Whether the score is 0: this node may trust its own timeouts and mark peers down."""
        return self._score == 0

    def apply(self, delta: int) -> int:
        """Move the score by ``delta``, kept within 0..top; return the new score."""
        with self._lock:
            self._score = min(self.top, max(0, self._score + delta))
            return self._score

    def scale(self, timeout: float) -> float:
        """Return ``timeout`` scaled by ``score + 1`` (at most ``top + 1`` times: a wave stays bounded)."""
        return timeout * (self._score + 1)

    def round_ended(self, late: float, interval: float, ok: int, failed: int) -> int:
        """Note a gossip round that started ``late`` seconds past its tick and had these exchanges.

        Late by more than ``LATE * interval``: +1. On time, with exchanges that all
        succeeded: -1. On time with failures says nothing about this node (the peers may
        be down): no change. Return the new score.
        """
        if late > LATE * interval:
            return self.apply(1)
        if ok and not failed:
            return self.apply(-1)
        return self._score

    def wave_ended(self, helpers: int, answered: Iterable[bool]) -> int:
        """Note a probe wave that asked ``helpers`` peers; ``answered``: per call, whether anyone answered.

        Some answer (the suspect's, a helper's "alive" or "not alive"): -1. Helpers asked
        and none answered, nor the suspect: +1 (this node is likelier the one cut off or
        slow). No helper to ask and no answer says nothing either way. Return the new score.
        """
        if any(answered):
            return self.apply(-1)
        if helpers:
            return self.apply(1)
        return self._score

    def refuted(self) -> int:
        """Note that this node found itself marked down and refuted it: +1. Return the new score."""
        return self.apply(1)
