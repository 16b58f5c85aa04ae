"""A registry node: its store, its gossip rounds, and the endpoint peers talk to.

A round re-registers this node if its entry is missing or marked down, starts the
probe waves that are due (``liveness``), drops what is gone, picks peers (``membership``:
``select_targets``, as many as ``Pace`` says) and runs one exchange with each, concurrently when an
executor is given. The exchange's logic is ``handshake``'s; the node only moves its
messages over the transport (encoded by ``wire``), merges what they bring into the
store and counts messages and bytes, once per side. Failures of one peer are counted,
logged, make the peer a suspect, and never stop the round or the loop; how late a round
starts and how it ends feed the node's ``awareness`` (its own health). Its ``keyring``
(from the config's gossip keys and cluster id) signs and checks its messages in the
transports; a message it refuses is counted by reason and never decoded.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from functools import partial
from typing import TypeVar

from . import handshake, rumor, validation, versions, wire
from .awareness import Awareness
from .clock import Clock
from .config import Config
from .keyring import Keyring, parse_keys
from .liveness import Detector
from .membership import NEW_PEER_LIMIT, Members, Pace, admit, select_targets
from .protocol import NODE_APP, Entry, Lease
from .snapshot import Snapshot
from .stats import Exchange as Exchange  # re-exported: the outcome of ``Node.exchange``
from .stats import RoundDone, Stats
from .store import Store, Written
from .transport import Reply, ReplyRejected, Transport, TransportError
from .wire import ProtocolError

log = logging.getLogger(__name__)
T = TypeVar("T")


class LateReply(TransportError):
    """A reply came after its exchange's deadline: the ages it carries are stale, so it is dropped."""


ROUND_SLACK = 0.25
"""Seconds a round waits for its exchanges beyond their deadline (``timeout``) before it moves on."""


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
        self.keyring = keyring_of(config)
        self.address = config.advertised()
        self.store = store
        self.transport = transport
        self.clock = clock or Clock(config.clock_offset)
        self.rng = rng or random.Random()
        self.lease = store.lease
        self.stats = Stats()
        self._executor = ThreadPoolExecutor(config.fanout + 1, thread_name_prefix="gossip") if parallel else None
        self._probes = ThreadPoolExecutor(config.probe_fanout + 1, thread_name_prefix="probe") if parallel else None
        self.detector = Detector(self, self._probes)
        self.awareness = Awareness(config.health_max)  # local health: is this node the slow one?
        self.members = Members(config.seeds)  # peers seen first-hand (``membership``)
        self.pace = Pace(config.fanout, config.rest_fanout if config.eager_push else 0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at: float | None = None  # when the loop started (lease clock); None: not started
        self.last_round: RoundDone | None = None
        self.screen = validation.Screen(self.stats.refuse)  # drops and counts entries no client could write
        self.rumors = rumor.Rumors(self, parallel)  # pushes what changes the store at once (``rumor``)

    # -- local writes ------------------------------------------------------------------

    def register(self, address: str, app_name: str, last_update: int | None = None) -> Written:
        """Register or renew an instance here."""
        wall = int(self.clock.wall()) if last_update is None else int(last_update)
        return self.rumors.write_local(address, wall, app_name=app_name)

    def deregister(self, address: str) -> Written:
        """Delete an instance everywhere by writing a tombstone here."""
        return self.rumors.write_local(address, int(self.clock.wall()), deleted=True)

    def renew_self(self) -> None:
        """Register this node when its entry is missing, of another app, or deleted.

        Never on a timer: node entries are not leased (``protocol.leased``). A deleted
        entry means a peer marked this node down (or an operator deregistered it): the new
        write beats that tombstone (its version is above every version seen here), which
        refutes it.
        """
        mine = self.store.get(self.address, self.clock.now())
        if mine is None or mine.deleted or mine.app_name != NODE_APP:
            self.register(self.address, NODE_APP)
            if mine is not None and mine.deleted:
                self.stats.add(refutations=1)
                self.awareness.refuted()
                log.warning("marked down by %s: refuting", mine.origin)

    # -- views -------------------------------------------------------------------------

    def listing(self) -> dict[str, Entry]:
        """Return the registrations a client sees (healthy and expired, no tombstones)."""
        now = self.clock.now()
        return {a: e for a, e in self.store.live(now).items() if not e.deleted}

    def peers(self) -> list[str]:
        """Return the live node entries known, except this node."""
        return self.store.snapshot().peers(self.clock.now(), self.lease, self.address)

    def member_peers(self) -> list[str]:
        """Return the live peers this node has seen first-hand (see ``membership``)."""
        return self.members.split(self.peers())[0]

    # -- gossip: initiator ----------------------------------------------------------------

    def run_round(self, peers: list[str] | None = None, late: float = 0.0) -> list[Exchange]:
        """Run one gossip round: renew self, sweep, exchange with chosen peers (``late``: seconds past its tick)."""
        self.stats.add(rounds=1)
        try:
            self.renew_self()
            self.detector.tick()
            self.store.sweep(self.clock.now())
        except Exception:  # a broken store must not kill the loop
            log.exception("renew/probe/sweep failed")
        if peers is None:
            live, suspects = self.peers(), self.detector.suspects()
            if suspects:  # being probed: another exchange would only stall this round
                live = [p for p in live if p not in suspects]
            members, candidates = self.members.split(live)
            fanout = self.pace.next(self.store.snapshot().generation)  # full while the store changes
            peers = select_targets(self.rng, members, candidates, self.config.seeds, self.address, fanout)
        # Every exchange of a round offers the state the round started with, whether the
        # exchanges run in parallel (nodes) or one after another (simulation): what one
        # exchange pulls in is passed on from the next round, the same in both.
        snap = self.store.snapshot()
        replies = getattr(self.transport, "replies", None)
        if self._executor is not None and replies is not None and len(peers) > 1:
            done = self._batched(peers, snap, replies)
        elif self._executor is not None and len(peers) > 1:
            done = self._in_parallel(peers, snap)
        else:
            done = [self.exchange(p, snap) for p in peers]
        self.last_round = RoundDone(self.clock.now(), sum(not e.ok for e in done))
        self.awareness.round_ended(late, self.config.interval, len(done) - self.last_round.failures,
                                   self.last_round.failures)
        return done

    def _in_parallel(self, peers: list[str], snap: Snapshot) -> list[Exchange]:
        """Run the exchanges concurrently; one still running past its deadline is reported failed."""
        assert self._executor is not None
        futures = [self._executor.submit(self.exchange, p, snap) for p in peers]
        wait(futures, self.config.timeout + ROUND_SLACK)
        return [f.result() if f.done() else Exchange(p, ok=False, error="still running past the deadline")
                for p, f in zip(peers, futures, strict=True)]

    def _batched(self, peers: list[str], snap: Snapshot, replies: Callable[..., Iterable]) -> list[Exchange]:
        """Run the exchanges with the round's summaries sent at once from this thread (``replies``:
        ``(requests, timeout)`` to ``(index, Reply or TransportError)`` as each comes).

        At rest a converged pair ends with the summary's reply, so a round costs no thread
        hand-off at all; an exchange whose reply asks for a Push goes on in the executor at once.
        """
        assert self._executor is not None
        deadline = self.clock.now() + self.config.timeout
        steps = [handshake.Initiator(self.address, snap, self.lease) for _ in peers]
        done = [Exchange(p, ok=False) for p in peers]
        going_on = {}  # index in ``done`` -> the Push step running in the executor
        now = self.clock.now()
        for i, reply in replies([(p, wire.encode(s.start(), now)) for p, s in zip(peers, steps, strict=True)],
                                max(0.0, deadline - now)):
            result, step = done[i], steps[i]
            ok, push = self._settled(result, partial(self._answered, result, step, reply, deadline), final=False)
            if not ok:
                continue
            if push is None:
                self._ended(result)  # converged: the summary's reply ended it
            else:
                going_on[i] = self._executor.submit(
                    self._settled, result, partial(self._pushed, result.peer, step, push, deadline, result))
        wait(going_on.values(), self.config.timeout + ROUND_SLACK)
        for i, f in going_on.items():
            if not f.done():  # it counts itself when it ends
                done[i] = Exchange(done[i].peer, ok=False, error="still running past the deadline")
        return done

    def exchange(self, peer: str, snap: Snapshot | None = None) -> Exchange:
        """Run one push-pull exchange with ``peer``, offering ``snap`` (default: now's); never raises."""
        # One deadline for the whole exchange, both requests: a reply is dated on arrival
        # (leases travel as ages), so one applied late would make old entries young.
        deadline = self.clock.now() + self.config.timeout
        steps = handshake.Initiator(self.address, self.store.snapshot() if snap is None else snap, self.lease)
        result = Exchange(peer, ok=False)

        def run() -> None:
            push = self._push_of(peer, steps, self._send(peer, steps.start(), deadline, result), deadline)
            if push is not None:
                self._pushed(peer, steps, push, deadline, result)

        self._settled(result, run)
        return result

    def _answered(self, result: Exchange, steps: handshake.Initiator, reply: Reply | TransportError,
                  deadline: float) -> wire.Push | None:
        """Take a Summary's ``reply`` (or its error) in a batched round: the Push it calls for, or None."""
        if isinstance(reply, TransportError):
            raise reply
        result.bytes_sent += reply.sent
        result.bytes_received += reply.received
        return self._push_of(result.peer, steps, reply.body, deadline)

    def _settled(self, result: Exchange, run: Callable[[], T], final: bool = True) -> tuple[bool, T | None]:
        """Run (a step of) ``result``'s exchange; return whether it succeeded, and what it returned.

        A failure is logged, counted, makes the peer a suspect and ends the exchange. A
        success ends it when ``final`` (else the caller goes on, or calls ``_ended``).
        """
        peer = result.peer
        try:
            value = run()
        except (TransportError, ProtocolError) as exc:
            if isinstance(exc, ReplyRejected):
                self.stats.reject(exc.reason)
            result.error = str(exc)
            log.info("exchange with %s failed: %s", peer, exc)
            if isinstance(exc, TransportError):
                self.detector.suspect(peer)
        except Exception as exc:  # noqa: BLE001 - the loop must survive anything
            result.error = f"{type(exc).__name__}: {exc}"
            log.exception("exchange with %s failed", peer)
        else:
            if final:
                self._ended(result)
            return True, value
        self._count(result)
        return False, None

    def _ended(self, result: Exchange) -> None:
        """End an exchange that succeeded: vouch for its peer, count it."""
        result.ok = True
        self.members.vouch(result.peer)
        self._count(result)

    def _count(self, result: Exchange) -> None:
        """Add one ended exchange to the node's counters."""
        self.stats.add(
            exchanges_ok=int(result.ok),
            exchanges_failed=int(not result.ok),
            bytes_sent=result.bytes_sent,
            bytes_received=result.bytes_received,
            merges_applied=result.received,
        )

    def _send(self, peer: str, message: wire.Message, deadline: float, result: Exchange) -> dict:
        """Send ``message`` to ``peer`` and return the reply's JSON object by ``deadline``, counting bytes."""
        if self.transport is None:
            raise TransportError("this node has no transport")
        now = self.clock.now()
        if now >= deadline:
            raise TransportError(f"{peer}: exchange deadline passed before sending")
        reply = self.transport.send(peer, wire.encode(message, now), deadline - now)
        result.bytes_sent += reply.sent
        result.bytes_received += reply.received
        return reply.body

    def _on_time(self, peer: str, deadline: float) -> float:
        """Return now if the exchange's ``deadline`` has not passed; else count and raise LateReply."""
        now = self.clock.now()
        if now > deadline:
            self.stats.add(late_replies=1)
            raise LateReply(f"{peer}: reply came {now - deadline:.3f}s after the exchange's deadline; dropped")
        return now

    def _push_of(self, peer: str, steps: handshake.Initiator, body: dict, deadline: float) -> wire.Push | None:
        """Return the Push that the Summary's reply ``body`` calls for, or None: the exchange is over."""
        summary = wire.decode_summary_reply(body)
        return steps.on_summary_reply(summary, self._on_time(peer, deadline))

    def _pushed(self, peer: str, steps: handshake.Initiator, push: wire.Push, deadline: float,
                result: Exchange) -> None:
        """Send ``push``, then merge the entries its reply brings, if it came by ``deadline``."""
        body = self._send(peer, push, deadline, result)
        result.sent = len(push.entries)
        pulled = steps.on_push_reply(wire.decode_push_reply(body, self.clock.now()))
        self._on_time(peer, deadline)  # after decoding, before anything is merged
        result.received = len(self.merge(pulled, peer))

    def merge(self, entries: Iterable[Entry], source: str | None = None) -> list[Entry]:
        """Merge entries gossip brought from ``source``; return those that changed the store (pushed on: ``rumor``).

        A change to this node's own entry (a tombstone: marked down) is refuted at once.
        """
        entries, refused = admit(self.screen(entries), self.store.snapshot().entries, self.address,
                                 self.config.max_new_peers)
        if refused:
            self.stats.refuse(NEW_PEER_LIMIT, refused)
            log.warning("refused %d new peers from one message (at most %d)", refused, self.config.max_new_peers)
        changed = self.store.apply(self._within_reach(entries), self.clock.now(), self.stats.rounds)
        if any(e.address == self.address for e in changed):
            self.renew_self()
        return self.rumors.forward(changed, source)

    def _within_reach(self, entries: Iterable[Entry]) -> list[Entry]:
        """Return the entries whose version is within reach of this node's clock; count the others."""
        entries, clock = list(entries), self.store.snapshot().clock
        fit = [e for e in entries if versions.within_reach(e.version, clock)]
        if len(fit) < len(entries):
            self.stats.refuse(versions.VERSION_JUMP, len(entries) - len(fit))
            far = next(e for e in entries if not versions.within_reach(e.version, clock))
            log.warning("refused %d gossiped entries far above this node's clock %d (e.g. %s at version %d from %s)",
                        len(entries) - len(fit), clock, far.address, far.version, far.origin)
        return fit

    # -- gossip: responder ----------------------------------------------------------------

    def handle(self, message: dict) -> dict:
        """Answer one gossip message from a peer; raise ProtocolError when malformed."""
        now = self.clock.now()
        request = wire.decode_request(message, now)
        if isinstance(request, (wire.Ping, wire.Probe)):
            return wire.encode(self.detector.answer(request), now)
        if isinstance(request, (wire.Push, wire.Rumor)) and request.entries:  # a bad entry must not shadow a good one
            request = dataclasses.replace(request, entries=self.screen(request.entries))
        reply, news = handshake.respond(self.store.snapshot(), request, now, self.lease)
        if news:
            self.stats.add(merges_applied=len(self.merge(news, request.sender)))
        sender = self.store.get(request.sender, now)
        if sender is not None and sender.app_name == NODE_APP and not sender.deleted:
            self.members.vouch(request.sender)  # a known node that reached this one
        return wire.encode(reply, now)

    def served(self, received: int, sent: int) -> None:
        """Count the bytes of one message answered (the transport measures them)."""
        self.stats.add_bytes(sent, received)

    def rejected(self, reason: str) -> None:
        """Count one request the keyring refused (the transport checks it)."""
        self.stats.reject(reason)

    # -- background loop ------------------------------------------------------------------

    def start(self) -> None:
        """Start the gossip loop in a daemon thread (once)."""
        if self._thread is None:
            self.started_at = self.clock.now()
            self._thread = threading.Thread(target=self._loop, name="gossip-loop", daemon=True)
            self._thread.start()

    def looping(self) -> bool:
        """Whether the gossip loop was started, not stopped, and its thread is alive."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the gossip loop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for pool in (self._executor, self._probes, self.rumors.pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        interval = self.config.interval
        # Random phase so nodes started together do not gossip in lockstep.
        next_at = time.monotonic() + self.rng.uniform(0, interval)
        late = 0.0  # how far past its tick a round starts: woken late, or the round before overran it
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.run_round(late=max(late, time.monotonic() - next_at))
            except Exception:  # noqa: BLE001 - logged, and the loop goes on
                log.exception("gossip round failed")
            next_at += interval
            late = time.monotonic() - next_at
            if late > 0:  # overran: skip missed ticks, keep the phase
                next_at += interval * (late // interval + 1)


def lease_of(config: Config) -> Lease:
    """Return the lease rules a config sets."""
    return Lease(config.ttl, config.expire_grace, config.tombstone_ttl)


def keyring_of(config: Config) -> Keyring:
    """Return the keyring a config sets (keys checked by ``Config.validate``)."""
    return Keyring(parse_keys(config.gossip_keys), config.cluster)
