"""Failure detection from the gossip exchanges themselves, as in SWIM (see ``protocol``).

* An exchange with a peer that fails (``TransportError``) makes that peer a *suspect* on
  this node, unless it already is one or ``max_suspects`` suspects are being probed. Only
  known, live node entries are suspected (a seed never heard of, or already marked down,
  is not).
* A suspicion runs in *waves*. A wave pings the suspect directly (``Ping``) and asks
  ``probe_fanout`` other peers, chosen at random among the members (``membership``), to
  ping it (``Probe``, SWIM's ping-req); each answers ``Alive(bool)``, a helper within its
  own ``timeout``.
* One "alive" ends the suspicion. A wave in which nobody reached the suspect counts
  against it only when that is *confirmed*: a helper answered "not alive", or there was
  no other peer to ask (a cluster of two). If helpers were asked and none of them
  answered, the wave proves nothing (this node may be the one cut off) and the
  suspicion ends without a verdict; the next failed exchange starts another.
* After ``probe_waves`` confirmed waves, each started at the first gossip round after the
  previous one ended, the suspect is *marked down*: a tombstone of its node entry,
  written here with a new Lamport version, provided the entry is still the one that was
  suspected (a newer one is the suspect's refutation). The tombstone spreads like any
  write; the node it names refutes when it sees it (``gossip.Node.renew_self``).
* A node that finds itself slow (``awareness``: its rounds start late, its helpers all
  stay silent, it had to refute) holds back while its score is above 0, as in Lifeguard:
  its pings and probes wait ``score + 1`` times longer, a wave that would mark its
  suspect down leaves it unsettled instead, and as a helper it never answers "not
  alive" (``Unconfirmed``, which the asker counts as no answer). Every finished wave
  tells the score whether anyone answered.

Bounds: a wave's requests run on a pool of ``probe_fanout + 1`` workers shared by every
suspicion (inline in a simulation, where the network answers at once), never on the
round's own exchanges; a ping takes at most ``timeout``, a probe ``2 * timeout`` (its
helper's ping inside it, never scaled), both times ``score + 1`` (at most ``health_max + 1``),
and a wave ends at its first "alive".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from . import wire
from .protocol import NODE_APP, Stamp
from .transport import TransportError
from .wire import Alive, Ping, Probe, ProtocolError

if TYPE_CHECKING:
    from .gossip import Node

log = logging.getLogger(__name__)

ALIVE = "alive"
"""Outcome of one call of a wave: the suspect answered (directly or through a helper)."""
UNREACHED = "unreached"
"""... this node's own ping of the suspect failed."""
DENIED = "denied"
"""... a helper answered that the suspect did not answer its ping (a confirmation)."""
NO_ANSWER = "no-answer"
"""... the helper itself did not answer (or, unhealthy, would not deny): says nothing about the suspect."""


class Unconfirmed(ProtocolError):
    """Raised by an unhealthy helper that could not reach a probe's target: it does not deny.

    Answered as any refused message is (an error reply), which every asker counts as a
    silent helper (NO_ANSWER): the wire is unchanged, and no false "not alive" is sent.
    """


@dataclass
class Suspicion:
    """One suspect and the waves probed against it so far."""

    target: str
    stamp: Stamp  # the suspect's entry when suspected; a newer one is a refutation
    waves: int = 0  # confirmed waves against the suspect
    running: bool = False  # a wave is in flight
    next_at: float = 0.0  # lease-clock instant from which the next wave may start
    outcomes: list[str] = field(default_factory=list)  # of the wave in flight
    calls: int = 0  # calls of the wave in flight
    helpers: int = 0  # helpers asked in the wave in flight


class Detector:
    """A node's suspicions: started by failed exchanges, probed in waves, settled by verdicts.

    ``executor`` runs a wave's calls (None: inline, one after another, as the simulator
    wants). Thread-safe: exchanges fail on the gossip executor's threads and waves end on
    the probe pool's.
    """

    def __init__(self, node: Node, executor: Executor | None) -> None:
        self.node = node
        self._executor = executor
        self._suspects: dict[str, Suspicion] = {}
        self._lock = threading.Lock()

    def suspects(self) -> list[str]:
        """Return the addresses under suspicion now, sorted (the round leaves them out of its peers)."""
        if not self._suspects:  # the common case, without the lock
            return []
        with self._lock:
            return sorted(self._suspects)

    # -- starting and running suspicions -----------------------------------------------------------

    def suspect(self, peer: str) -> None:
        """Follow up a failed exchange with ``peer``: suspect it and start the first wave."""
        node = self.node
        entry = node.store.get(peer, node.clock.now())
        if entry is None or entry.deleted or entry.app_name != NODE_APP or peer == node.address:
            return
        with self._lock:
            if peer in self._suspects or len(self._suspects) >= node.config.max_suspects:
                return
            s = self._suspects[peer] = Suspicion(peer, entry.stamp, running=True)
        node.stats.add(suspicions=1)
        log.info("suspect %s: exchange failed; probing", peer)
        self._launch(s)

    def tick(self) -> None:
        """Start the waves that are due (the node calls it at the start of every round)."""
        now = self.node.clock.now()
        with self._lock:
            due = [s for s in self._suspects.values() if not s.running and now >= s.next_at]
            for s in due:  # claimed here: a round run on request may tick alongside the loop
                s.running = True
        for s in due:
            self._launch(s)

    def _launch(self, s: Suspicion) -> None:
        """Start one wave against ``s.target`` (claimed: ``running``): a direct ping and ``probe_fanout`` probes."""
        node = self.node
        others = [p for p in node.member_peers() if p != s.target]
        helpers = node.rng.sample(others, min(node.config.probe_fanout, len(others)))
        calls: list[Callable[[], str]] = [partial(self.ping, s.target)]
        calls += [partial(self._probe, h, s.target) for h in helpers]
        with self._lock:
            s.outcomes, s.calls, s.helpers = [], len(calls), len(helpers)
        for call in calls:
            if self._executor is not None:
                self._executor.submit(self._run, s, call)
                continue
            self._record(s, call())
            if not s.running:  # settled (by an "alive"): skip the remaining calls
                break

    def _run(self, s: Suspicion, call: Callable[[], str]) -> None:
        try:
            outcome = call()
        except Exception:  # noqa: BLE001 - a broken call counts as no answer; the wave must end
            log.exception("probe of %s failed", s.target)
            outcome = NO_ANSWER
        self._record(s, outcome)

    def _record(self, s: Suspicion, outcome: str) -> None:
        """Note one call's outcome; settle the wave at its first "alive" or its last call."""
        with self._lock:
            if not s.running or self._suspects.get(s.target) is not s:
                return  # the wave is already settled
            s.outcomes.append(outcome)
            if outcome != ALIVE and len(s.outcomes) < s.calls:
                return
            s.running = False
            verdict = self._verdict(s)
            if verdict != "next":
                del self._suspects[s.target]
        self.node.awareness.wave_ended(s.helpers, [o in (ALIVE, DENIED) for o in s.outcomes])
        if verdict == "down":
            self._mark_down(s)
        elif verdict != "next":
            log.info("suspect %s: %s", s.target, verdict)

    def _verdict(self, s: Suspicion) -> str:
        """Return what a finished wave decides: cleared, unsettled, next (wave), or down."""
        if ALIVE in s.outcomes:
            return "cleared"
        if s.helpers and DENIED not in s.outcomes:
            return "unsettled"  # helpers were asked and none confirmed: proves nothing
        s.waves += 1
        if s.waves >= self.node.config.probe_waves:
            # A node that finds itself slow does not trust its own timeouts (``awareness``).
            return "down" if self.node.awareness.healthy() else "unsettled"
        s.next_at = self.node.clock.now()
        return "next"

    def _mark_down(self, s: Suspicion) -> None:
        """Write the tombstone of the suspect's entry, unless it changed since it was suspected."""
        node = self.node
        now = node.clock.now()
        current = node.store.get(s.target, now)
        if current is None or current.deleted or current.stamp != s.stamp:
            log.info("suspect %s: its entry changed meanwhile; not marked down", s.target)
            return
        node.store.write_local(s.target, now, int(node.clock.wall()), node.address, deleted=True)
        node.stats.add(down_marks=1)
        log.warning("marked %s down: unreachable directly and through %d wave(s) of probes", s.target, s.waves)

    # -- the calls of a wave, and the answers to them ----------------------------------------------

    def ping(self, target: str, timeout: float | None = None) -> str:
        """Ping ``target`` within ``timeout`` (default: this node's, scaled by its health); ALIVE or UNREACHED."""
        if timeout is None:
            timeout = self.node.awareness.scale(self.node.config.timeout)
        try:
            alive = self._call(target, Ping(self.node.address), timeout).alive
        except (TransportError, ProtocolError):
            return UNREACHED
        if alive:
            self.node.members.vouch(target)
        return ALIVE if alive else UNREACHED

    def _probe(self, helper: str, target: str) -> str:
        """Ask ``helper`` to ping ``target``; return ALIVE, DENIED, or NO_ANSWER (helper silent)."""
        try:
            timeout = 2 * self.node.awareness.scale(self.node.config.timeout)
            alive = self._call(helper, Probe(self.node.address, target), timeout).alive
        except (TransportError, ProtocolError):
            return NO_ANSWER
        return ALIVE if alive else DENIED

    def _call(self, peer: str, message: Ping | Probe, timeout: float) -> Alive:
        node = self.node
        if node.transport is None:
            raise TransportError("this node has no transport")
        reply = node.transport.send(peer, wire.encode(message, node.clock.now()), timeout)
        node.stats.add_bytes(reply.sent, reply.received)
        return wire.decode_alive(reply.body)

    def answer(self, request: Ping | Probe) -> Alive:
        """Answer a peer's Ping at once, or its Probe after pinging the target (at most ``timeout``).

        A Probe's target must be a node this one holds an entry of: a message cannot make a
        node send datagrams or requests to an address of its choosing (ProtocolError, a 400;
        the asker counts a helper that refuses as silent, which proves nothing). A helper
        that is not healthy (``awareness``) and could not reach the target raises
        Unconfirmed instead of answering "not alive": its ping may have timed out on it.
        """
        if isinstance(request, Ping) or request.target == self.node.address:
            return Alive(True)
        known = self.node.store.get(request.target, self.node.clock.now())
        if known is None or known.app_name != NODE_APP:
            raise ProtocolError(f"probe target {request.target} is no node known here")
        if self.ping(request.target, self.node.config.timeout) == ALIVE:
            return Alive(True)
        if not self.node.awareness.healthy():
            raise Unconfirmed(f"probe target {request.target} did not answer, and this node is slow itself")
        return Alive(False)

