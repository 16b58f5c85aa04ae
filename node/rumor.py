"""Eager push of news (rumor mongering) on top of the anti-entropy rounds (see ``protocol``).

When a write changes a node's store (a local write through the API, or a merge of what
gossip or a rumor brought), the node pushes the entries that changed at once, outside
its rounds, to ``fanout`` peers drawn at random among its members (``membership``),
never back to the peer they came from. The message is a ``wire.Rumor``: the sender and
the entries, with ages as every entry travels, in one datagram (at most
``MAX_ENTRIES`` entries and what fits in ``max_datagram``; the rest is left to the
rounds). The receiver answers and merges it as a Push that wants nothing (``handshake``,
``gossip.Node.merge``: screen, new-peer limit, version reach; the keyring has checked the
signature before): a PushReply of no entries, the count that beat its store. It forwards only
the entries that changed its own store, so each node forwards each write at most once:
``N * fanout`` messages per write at most, whatever the cluster does meanwhile (Demers
et al.'s rumor mongering, with the rounds as the anti-entropy that repairs what a rumor
misses; memberlist piggybacks its broadcasts on gossip messages in the same spirit).

A rumor is best effort. A failed send is logged at debug and counted
(``sd_gossip_rumors_failed_total``), and never makes the peer a suspect: the rounds
judge liveness. Sends run on a small pool of their own, never on the API request, the
UDP server's thread or the round; when ``QUEUE_LIMIT`` sends already wait, a further one
is dropped and counted (``sd_gossip_rumors_dropped_total``). A node without a pool
(``parallel=False``: tests) runs its sends one after another, breadth first, without
recursion; the simulator schedules them on its virtual clock instead (``dispatch``). A
cluster at rest writes nothing, so it sends no rumor.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from . import wire
from .protocol import Entry
from .store import Written
from .transport import ReplyRejected, TransportError
from .wire import ProtocolError

if TYPE_CHECKING:
    from .gossip import Node

log = logging.getLogger(__name__)

MAX_ENTRIES = 16
"""Most entries one rumor carries; a bigger change is left to the rounds beyond them."""
QUEUE_LIMIT = 64
"""Rumor sends waiting or under way at once on one node; a further one is dropped and counted."""
FRAME_ROOM = 128
"""Bytes of a datagram kept for its frame (format, kind, id, cluster id up to 64, a 32-byte signature)."""

Job = Callable[[], object]


@dataclass
class RumorStats:
    """Counters of a node's rumors; exported by /metrics as ``sd_gossip_rumors_*_total``."""

    sent: int = 0  # rumors a peer answered
    failed: int = 0  # sends that failed (peer down, cut, refused, malformed answer)
    dropped: int = 0  # sends dropped because QUEUE_LIMIT sends were already waiting
    left: int = 0  # changed entries left to the rounds (beyond MAX_ENTRIES or one datagram)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        """Add to several counters at once."""
        with self.lock:
            for k, v in deltas.items():
                setattr(self, k, getattr(self, k) + v)


def pick(rng: random.Random, members: Sequence[str], source: str | None, fanout: int) -> list[str]:
    """Return up to ``fanout`` distinct ``members``, drawn uniformly, never ``source``."""
    drawn = rng.sample(members, min(len(members), fanout + 1))
    return [p for p in drawn if p != source][:fanout]


def fit(entries: Sequence[Entry], now: float, sender: str, budget: int,
        max_entries: int = MAX_ENTRIES) -> list[Entry]:
    """Return the entries, in order, that one rumor from ``sender`` carries in ``budget`` bytes.

    Sizes are those of the JSON encoding, which is never shorter than the datagram's
    msgpack of the same object (``udp``), so a rumor that fits here fits a datagram. An
    entry too big for what is left is skipped; at most ``max_entries`` are taken.
    """
    size = len(wire.dumps({"v": wire.PROTOCOL_VERSION, "type": wire.RUMOR, "from": sender, "entries": []}))
    out = []
    for e in entries:
        n = len(json.dumps(wire.entry_to_wire(e, now), separators=(",", ":"))) + 8  # a comma; room for the age
        if size + n <= budget:
            out.append(e)
            size += n
            if len(out) == max_entries:
                break
    return out


class Rumors:
    """A node's eager push: ``spread`` what changed its store (``write_local``, ``forward``).

    ``enabled`` (the config's ``eager_push``) turns sending off; a node merges the rumors
    it receives either way (``gossip.Node.handle``). ``dispatch(job) -> bool`` runs one
    send, or refuses it (False: dropped): by default a pool of ``fanout`` threads behind
    ``QUEUE_LIMIT`` slots, or, without ``parallel``, a queue drained in place.
    """

    def __init__(self, node: Node, parallel: bool = True) -> None:
        self.node = node
        self.enabled = node.config.eager_push
        self.stats = RumorStats()
        self.budget = node.config.max_datagram - FRAME_ROOM
        self._slots = threading.BoundedSemaphore(QUEUE_LIMIT)
        self.pool = ThreadPoolExecutor(node.config.fanout, thread_name_prefix="rumor") if parallel else None
        self._queue: deque[Job] = deque()
        self._draining = False
        self.dispatch: Callable[[Job], bool] = self._submit if parallel else self._inline

    # -- sending -------------------------------------------------------------------------

    def write_local(self, address: str, wall: int, **kwargs) -> Written:
        """Store a write accepted here (``Store.write_local``, on the node's clock) and push it at once."""
        node = self.node
        written = node.store.write_local(address, node.clock.now(), wall, node.address, **kwargs)
        self.spread([written.entry])
        return written

    def forward(self, changed: list[Entry], source: str | None) -> list[Entry]:
        """Push on what a merge of entries from ``source`` changed, but this node's own entry; return ``changed``.

        A change to its own entry is a mark-down, which the node refutes with a write of its own.
        """
        self.spread([e for e in changed if e.address != self.node.address], source)
        return changed

    def spread(self, entries: Sequence[Entry], source: str | None = None) -> None:
        """Push ``entries`` (that just changed the store) to ``fanout`` members other than ``source``."""
        if not self.enabled or not entries:
            return
        node = self.node
        news = fit(entries, node.clock.now(), node.address, self.budget)
        if len(news) < len(entries):
            self.stats.add(left=len(entries) - len(news))
        if not news:
            return
        for peer in pick(node.rng, node.member_peers(), source, node.config.fanout):
            if not self.dispatch(partial(self.send, peer, news)):
                self.stats.add(dropped=1)
                log.debug("rumor to %s dropped: %d sends already waiting", peer, QUEUE_LIMIT)

    def send(self, peer: str, entries: Sequence[Entry]) -> bool:
        """Send one rumor to ``peer`` now; return whether it answered. Never raises."""
        node = self.node
        try:
            if node.transport is None:
                raise TransportError("this node has no transport")
            now = node.clock.now()
            message = wire.encode(wire.Rumor(node.address, entries), now)
            reply = node.transport.send(peer, message, node.config.timeout)
            wire.decode_push_reply(reply.body, now)
        except (TransportError, ProtocolError) as exc:
            if isinstance(exc, ReplyRejected):
                node.stats.reject(exc.reason)
            self.stats.add(failed=1)
            log.debug("rumor to %s failed: %s", peer, exc)
            return False
        except Exception:  # noqa: BLE001 - a rumor never takes its thread down
            self.stats.add(failed=1)
            log.exception("rumor to %s failed", peer)
            return False
        node.stats.add_bytes(reply.sent, reply.received)
        self.stats.add(sent=1)
        return True

    def _submit(self, job: Job) -> bool:
        """Run ``job`` on the pool if a slot is free; else refuse it."""
        if self.pool is None or not self._slots.acquire(blocking=False):
            return False
        try:
            self.pool.submit(self._run, job)
        except RuntimeError:  # the pool is shut down: the node is stopping
            self._slots.release()
            return False
        return True

    def _run(self, job: Job) -> None:
        try:
            job()
        finally:
            self._slots.release()

    def _inline(self, job: Job) -> bool:
        """Queue ``job`` and, unless a drain is under way here, run the queue out, breadth first."""
        if len(self._queue) >= QUEUE_LIMIT:
            return False
        self._queue.append(job)
        if not self._draining:
            self._draining = True
            try:
                while self._queue:
                    self._queue.popleft()()
            finally:
                self._draining = False
        return True

