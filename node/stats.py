"""What a node counts about its gossip: one exchange's outcome and the node's counters (/metrics)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from . import validation, versions
from .keyring import REASONS
from .membership import NEW_PEER_LIMIT


@dataclass
class Exchange:
    """Outcome of one exchange with one peer."""

    peer: str
    ok: bool
    sent: int = 0  # entries pushed to the peer
    received: int = 0  # entries pulled from the peer that changed our store
    bytes_sent: int = 0
    bytes_received: int = 0
    error: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class RoundDone:
    """When the last round completed (lease clock) and how many of its exchanges failed."""

    at: float
    failures: int


@dataclass
class Stats:
    """Counters a node keeps about its gossip; exported by /metrics.

    Bytes are those the transport measured, counted once on each side of a message:
    an initiator counts its requests as sent and the replies as received, a responder
    the other way round.
    """

    rounds: int = 0
    exchanges_ok: int = 0
    exchanges_failed: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    merges_applied: int = 0
    # reason (keyring.REASONS) -> messages refused, requests and replies alike
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    suspicions: int = 0  # peers suspected after a failed exchange
    down_marks: int = 0  # suspects this node marked down (tombstones of their entries)
    refutations: int = 0  # times this node found itself marked down and re-registered
    late_replies: int = 0  # replies decoded after their exchange's deadline, dropped unmerged
    # reason (versions.VERSION_JUMP, membership.NEW_PEER_LIMIT, validation.REASONS) -> gossiped entries refused
    refused: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((versions.VERSION_JUMP, NEW_PEER_LIMIT, *validation.REASONS), 0))
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        """Add to several counters at once."""
        with self.lock:
            for k, v in deltas.items():
                setattr(self, k, getattr(self, k) + v)

    def reject(self, reason: str) -> None:
        """Count one message refused for ``reason``."""
        with self.lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def refuse(self, reason: str, entries: int) -> None:
        """Count ``entries`` gossiped entries refused for ``reason``."""
        with self.lock:
            self.refused[reason] = self.refused.get(reason, 0) + entries

    def add_bytes(self, sent: int, received: int) -> None:
        """Add one message's bytes (the cheap form of ``add``, run for every message answered)."""
        with self.lock:
            self.bytes_sent += sent
            self.bytes_received += received
