"""Lamport versions stay where every node accepts them: in 1..MAX_INT, never far above a receiver's clock.

A write's version is one above everything its node has seen (``protocol``), so a single
entry of a huge version, once taken in, raises every clock it reaches for good, and the
writes after it get versions that peers refuse: replication would stop. Two bounds:

* a local write whose version would pass MAX_INT is refused (``VersionsExhausted``)
  instead of being given a version every peer refuses;
* an incoming entry more than MAX_JUMP above the receiver's clock is refused
  (``within_reach``; the node counts it as ``version_jump``). A cluster advances its
  versions by at most its number of writes: at a million writes a second, 2**40 takes
  twelve days, so no honest peer is that far ahead, even of a node that starts empty
  or comes back after a long absence.
"""

from __future__ import annotations

MAX_INT = 2**53 - 1
"""Largest version or timestamp accepted: exact in every JSON implementation and in SQLite."""

MAX_JUMP = 2**40
"""How far above its own clock a node accepts an incoming version."""

VERSION_JUMP = "version_jump"
"""Reason counted for an incoming entry refused by ``within_reach``."""


class VersionsExhausted(RuntimeError):
    """A local write would need a version above MAX_INT, which every peer refuses."""


def next_version(clock: int, current: int) -> int:
    """Return the version of a local write above ``clock`` and the ``current`` entry's version."""
    base = max(clock, current)
    if base >= MAX_INT:
        raise VersionsExhausted(f"this node's Lamport clock is at {base}: no version is left below {MAX_INT + 1}")
    return base + 1


def within_reach(version: int, clock: int) -> bool:
    """Tell whether a node whose clock reads ``clock`` accepts an incoming ``version``."""
    return version <= clock + MAX_JUMP
