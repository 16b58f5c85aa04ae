"""A registry node: its store, its gossip rounds, and the handler peers talk to.

A round picks peers (``protocol.select_peers``) and runs one push-pull exchange with
each, concurrently when an executor is given:

    initiator                               responder
    sum {from, buckets: [xor per bucket]}  ──▶  compare with its own buckets
                                           ◀──  {buckets that differ, digest of them}
    ack {from, entries, want}              ──▶  apply entries      (only when the
                                           ◀──  {entries wanted}    buckets differ)

Failures of one peer are counted, logged and never stop the round or the loop.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import protocol
from .clock import Clock
from .config import Config
from .protocol import NODE_APP, Entry, Lease
from .store import Snapshot, Store
from .transport import Transport, TransportError

log = logging.getLogger(__name__)


class ProtocolError(ValueError):
    """A gossip message is malformed."""


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


@dataclass
class Stats:
    """Counters a node keeps about its gossip; exported by /metrics."""

    rounds: int = 0
    exchanges_ok: int = 0
    exchanges_failed: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    merges_applied: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self.lock:
            for k, v in deltas.items():
                setattr(self, k, getattr(self, k) + v)


class Node:
    """One registry node; the protocol glue between store, clock, transport and RNG."""

    def __init__(
        self,
        config: Config,
        store: Store,
        transport: Transport | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        parallel: bool = True,
    ) -> None:
        self.config = config
        self.address = config.advertised()
        self.store = store
        self.transport = transport
        self.clock = clock or Clock(config.clock_offset)
        self.rng = rng or random.Random()
        self.lease = store.lease
        self.stats = Stats()
        self._executor = ThreadPoolExecutor(config.fanout + 1, thread_name_prefix="gossip") if parallel else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- local writes ------------------------------------------------------------------

    def register(self, address: str, app_name: str, last_update: int | None = None) -> Entry:
        """Register or renew an instance here."""
        wall = int(self.clock.wall()) if last_update is None else int(last_update)
        return self.store.write_local(address, self.clock.now(), wall, self.address, app_name=app_name)

    def deregister(self, address: str) -> Entry:
        """Delete an instance everywhere by writing a tombstone here."""
        return self.store.write_local(address, self.clock.now(), int(self.clock.wall()), self.address, deleted=True)

    def renew_self(self) -> None:
        """Register this node as an entry when missing, changed or due for renewal."""
        now = self.clock.now()
        mine = self.store.get(self.address, now)
        due = mine is None or now - mine.renewed_at >= self.config.renew_every
        if due or mine.deleted or mine.app_name != NODE_APP:
            self.register(self.address, NODE_APP)

    # -- views -------------------------------------------------------------------------

    def listing(self) -> dict[str, Entry]:
        """Return the registrations a client sees (healthy and expired, no tombstones)."""
        now = self.clock.now()
        return {a: e for a, e in self.store.live(now).items() if not e.deleted}

    def peers(self) -> list[str]:
        """Return the live node entries known, except this node."""
        return self.store.snapshot().peers(self.clock.now(), self.lease, self.address)

    # -- gossip: initiator ----------------------------------------------------------------

    def run_round(self, peers: list[str] | None = None) -> list[Exchange]:
        """Run one gossip round: renew self, sweep, exchange with chosen peers."""
        self.stats.add(rounds=1)
        try:
            self.renew_self()
            self.store.sweep(self.clock.now())
        except Exception:  # a broken store must not kill the loop
            log.exception("renew/sweep failed")
        if peers is None:
            peers = protocol.select_peers(
                self.rng, self.peers(), self.config.seeds, self.address, self.config.fanout, presorted=True
            )
        # Every exchange of a round offers the state the round started with, whether the
        # exchanges run in parallel (nodes) or one after another (simulation): what one
        # exchange pulls in is passed on from the next round, the same in both.
        snap = self.store.snapshot()
        if self._executor is not None and len(peers) > 1:
            return list(self._executor.map(lambda p: self.exchange(p, snap), peers))
        return [self.exchange(p, snap) for p in peers]

    def exchange(self, peer: str, snap: Snapshot | None = None) -> Exchange:
        """Run one push-pull exchange with ``peer``, offering ``snap`` (default: now's); never raises."""
        result = Exchange(peer, ok=False)
        try:
            self._exchange(peer, result, self.store.snapshot() if snap is None else snap)
            result.ok = True
        except (TransportError, ProtocolError) as exc:
            result.error = str(exc)
            log.info("exchange with %s failed: %s", peer, exc)
        except Exception as exc:  # noqa: BLE001 - the loop must survive anything
            result.error = f"{type(exc).__name__}: {exc}"
            log.exception("exchange with %s failed", peer)
        self.stats.add(
            exchanges_ok=int(result.ok),
            exchanges_failed=int(not result.ok),
            bytes_sent=result.bytes_sent,
            bytes_received=result.bytes_received,
            merges_applied=result.received,
        )
        return result

    def _send(self, peer: str, message: dict, result: Exchange) -> dict:
        reply = self.transport.send(peer, message, self.config.timeout)
        result.bytes_sent += reply.sent
        result.bytes_received += reply.received
        if not isinstance(reply.body, dict):
            raise ProtocolError("reply must be a JSON object")
        return reply.body

    def _exchange(self, peer: str, result: Exchange, snap: Snapshot) -> None:
        # Step 1: per-bucket summary; the peer answers with its digest of differing buckets.
        nb = protocol.bucket_count(len(snap.entries))
        summary = snap.summary_hex(nb)
        body = self._send(peer, {"type": "sum", "from": self.address, "buckets": summary}, result)
        differing = body.get("buckets", [])
        if not isinstance(differing, list) or not all(type(i) is int and 0 <= i < nb for i in differing):
            raise ProtocolError("buckets must be a list of bucket indexes")
        if not differing:
            return
        theirs = _parse_digest(body.get("digest"))
        # Step 2: push what the peer lacks, ask for what it has newer.
        now = self.clock.now()
        mine = snap.in_buckets(snap.live(now, self.lease), nb, set(differing))
        send, want = protocol.delta(mine, theirs)
        if not send and not want:
            return
        push = [e.to_wire(now) for e in send]
        body = self._send(peer, {"type": "ack", "from": self.address, "entries": push, "want": want}, result)
        result.sent = len(send)
        entries = _parse_entries(body.get("entries", []), self.clock.now())
        result.received = len(self.store.apply(entries, self.clock.now(), self.stats.rounds))

    # -- gossip: responder ----------------------------------------------------------------

    def handle(self, message: dict) -> dict:
        """Answer one gossip message from a peer; raise ProtocolError when malformed."""
        if not isinstance(message, dict):
            raise ProtocolError("message must be a JSON object")
        kind = message.get("type")
        if kind == "sum":
            buckets = message.get("buckets")
            if not isinstance(buckets, list) or not 1 <= len(buckets) <= protocol.MAX_BUCKETS:
                raise ProtocolError(f"buckets must be a list of 1..{protocol.MAX_BUCKETS} hex hashes")
            snap = self.store.snapshot()
            nb = len(buckets)
            if buckets == snap.cached_summary_hex(nb):  # converged pair, in our own spelling
                return {"buckets": []}
            try:
                theirs = [int(h, 16) for h in buckets]
            except (TypeError, ValueError):
                raise ProtocolError("buckets must be hex strings") from None
            differing = [i for i, h in enumerate(snap.summary(nb)) if h != theirs[i]]
            if not differing:
                return {"buckets": []}
            mine = snap.in_buckets(snap.live(self.clock.now(), self.lease), nb, set(differing))
            return {"buckets": differing, "digest": [[a, e.version, e.origin] for a, e in mine.items()]}
        if kind == "syn":  # full digest in one step (still answered; nodes now send "sum")
            digest = _parse_digest(message.get("digest"))
            now = self.clock.now()
            send, want = protocol.delta(self.store.live(now), digest)
            return {"entries": [e.to_wire(now) for e in send], "want": want}
        if kind == "ack":
            entries = _parse_entries(message.get("entries"), self.clock.now())
            want = message.get("want", [])
            if not isinstance(want, list) or not all(isinstance(a, str) for a in want):
                raise ProtocolError("want must be a list of addresses")
            changed = self.store.apply(entries, self.clock.now(), self.stats.rounds)
            self.stats.add(merges_applied=len(changed))
            reply: dict = {"applied": len(changed)}
            if want:
                now = self.clock.now()
                live = self.store.live(now)
                reply["entries"] = [live[a].to_wire(now) for a in want if a in live]
            return reply
        raise ProtocolError(f"unknown message type {kind!r}")

    # -- background loop ------------------------------------------------------------------

    def start(self) -> None:
        """Start the gossip loop in a daemon thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="gossip-loop", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the gossip loop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        interval = self.config.interval
        # Random phase so nodes started together do not gossip in lockstep.
        next_at = time.monotonic() + self.rng.uniform(0, interval)
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.run_round()
            except Exception:  # noqa: BLE001 - logged, and the loop goes on
                log.exception("gossip round failed")
            next_at += interval
            if next_at < time.monotonic():  # overran: skip missed ticks, keep the phase
                next_at += interval * ((time.monotonic() - next_at) // interval + 1)


def _parse_digest(value: object) -> dict[str, tuple[int, str]]:
    if not isinstance(value, list):
        raise ProtocolError("digest must be a list")
    out = {}
    try:
        for address, version, origin in value:
            if type(address) is not str or type(version) is not int or type(origin) is not str:
                raise ValueError
            if not 0 < version <= protocol.MAX_INT:
                raise ValueError
            out[address] = (version, origin)
    except (TypeError, ValueError):
        raise ProtocolError("digest items must be [address, version, origin]") from None
    return out


def _parse_entries(value: object, now: float) -> list[Entry]:
    if not isinstance(value, list):
        raise ProtocolError("entries must be a list")
    try:
        return [Entry.from_wire(item, now) for item in value]
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None


def lease_of(config: Config) -> Lease:
    """Return the lease rules a config sets."""
    return Lease(config.ttl, config.expire_grace, config.tombstone_ttl)
