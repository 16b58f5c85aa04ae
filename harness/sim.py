"""An in-process cluster: real Node code on an in-memory network with a virtual clock.

``SimCluster`` offers the operations of ``contract.ClusterLike`` (register, deregister,
partition, heal, kill, start, pause, unpause, skew, views, digests, wait_converged,
settle) plus loss, so one scenario runs against it and the Docker ``Cluster``. Time is virtual. Each node
has a fixed random phase in (0, 1], like a real node's timer started at a random
instant: during a round the shared clock moves to ``start + phase * interval`` before
that node gossips, so first-seen instants fall inside the round, as they do between real
nodes, and news can travel several hops in one round. With ``synchronous=True`` every
node gossips at the end of the round and what it learns is applied only after the
round, as in the synchronous model of the theory tables. ``warm()`` forms full membership
without the O(N^2) gossip of a bootstrap, for large clusters.

Rumors (``node.rumor``, eager push) are messages in flight: each send is delivered
``rumor_latency`` virtual seconds after it was queued, in time order with the nodes'
rounds, and what it changes is forwarded from there; news never crosses the cluster in one
call. Synchronous rounds are the theory's pure push-pull model, so they run with eager
push off (``synchronous`` turns it off on every node, and on again when set back).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Sequence

from node import protocol
from node.clock import Clock, FakeClock
from node.config import TEST, Config
from node.gossip import Node, lease_of
from node.protocol import Entry
from node.store import Store
from node.transport import InMemoryNetwork

from . import convergence
from .errors import ConvergenceTimeout, NodeNotFound
from .topology import node_address, partition_cuts, validate_groups

SIM = dataclasses.replace(TEST, interval=0.2, timeout=0.1)
"""Default node settings of a simulated cluster: 200 ms rounds, fanout 3, 6 s leases."""

RUMOR_LATENCY = 0.003
"""Virtual seconds from queuing a rumor to its handling by the peer: one hop between
local processes (a datagram each way, a merge committed to SQLite), about what
``bench/serf_compare.py`` sees per hop on loopback."""


class SimNode(Node):
    """A Node whose gossip merges can be held back until the end of a synchronous round."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # While not None, what gossip brings is collected here instead of merged.
        self.deferred: list[Entry] | None = None

    def merge(self, entries: Iterable[Entry], source: str | None = None) -> list[Entry]:
        """Merge ``entries`` now, or collect those that would change the store while deferring."""
        if self.deferred is None:
            return super().merge(entries, source)
        changed = self.store.changes(entries, self.clock.now())
        self.deferred.extend(changed)
        return changed

    def merge_deferred(self) -> None:
        """Merge what was collected since deferring began, and stop deferring."""
        held, self.deferred = self.deferred or [], None
        self.merge(held)


@contextlib.contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block.

    Rounds allocate millions of small objects that live on (entries, digests), which
    makes the collector scan the whole heap again and again, for nothing: the nodes
    make no reference cycles, so reference counting frees all their garbage anyway.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class SimCluster:
    """N nodes named n1..nN at ``node_address(name)``, seeded with n1 and n2.

    Gossip is open unless ``config`` carries ``gossip_keys``: then every node signs and
    checks its messages with them, as real nodes do.
    """

    def __init__(
        self,
        nodes: int = 5,
        *,
        config: Config = SIM,
        seed: int = 0,
        synchronous: bool = False,
        seeds: int = 2,
        store_factory=None,
        rumor_latency: float = RUMOR_LATENCY,
    ) -> None:
        self.config = config
        self.clock = FakeClock()
        self.rng = random.Random(seed)
        # Nodes never change a message once sent or received: skip the decoding copies.
        self.network = InMemoryNetwork(random.Random(seed + 1), copy=False)
        self.rumor_latency = rumor_latency
        self._mail: list[tuple[float, int, Callable[[], object]]] = []  # rumors in flight: (due, seq, send)
        self._seq = itertools.count()
        self._synchronous = synchronous
        self.rounds = 0
        self._seed = seed
        self._seed_count = seeds
        self._store_factory = store_factory or (lambda name, lease: Store(lease))
        self._nodes: dict[str, SimNode] = {}
        self._down: set[str] = set()
        self._phase: dict[str, float] = {}
        self._order: list[str] = []  # node names by phase
        for _ in range(nodes):
            self._spawn()

    # -- membership ----------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        """Names of every node, in order."""
        return list(self._nodes)

    def node(self, name: str) -> SimNode:
        """Return the Node object of ``name``."""
        try:
            return self._nodes[name]
        except KeyError:
            raise NodeNotFound(f"no node {name!r} in this simulated cluster") from None

    def address(self, name: str) -> str:
        return self.node(name).address

    def _spawn(self, seeds: Sequence[str] | None = None) -> str:
        k = len(self._nodes) + 1
        name = f"n{k}"
        address = node_address(name)
        if seeds is None:
            seeds = [node_address(f"n{i}") for i in range(1, self._seed_count + 1) if i != k]
        cfg = dataclasses.replace(self.config, advertise=address, seeds=tuple(seeds), name=name)
        store = self._store_factory(name, lease_of(cfg))
        rng = random.Random(self._seed * 100_003 + k)
        node = SimNode(cfg, store, None, Clock(0.0, self.clock.now), rng, parallel=False)
        node.transport = self.network.attach(address, node)
        node.rumors.dispatch = self._later
        node.rumors.enabled = cfg.eager_push and not self._synchronous
        node.renew_self()
        self._nodes[name] = node
        self._phase[name] = 1.0 - self.rng.random()  # in (0, 1]
        self._order = sorted(self._phase, key=self._phase.__getitem__)
        return name

    def rephase(self) -> None:
        """Draw every node's phase again, as if all timers had been restarted at random."""
        for name in self._phase:
            self._phase[name] = 1.0 - self.rng.random()
        self._order = sorted(self._phase, key=self._phase.__getitem__)

    def add_node(self, seed: str = "n1") -> str:
        """Add a late joiner that knows only ``seed``; return its name."""
        return self._spawn([self.address(seed)])

    def warm(self) -> None:
        """Form full membership at once, without gossip: every node stores every node's self-entry.

        That is the state a gossip bootstrap from the seeds reaches (before the first
        renewal, every node holds each node's entry exactly as its origin wrote it:
        same version, origin, app_name and last_update), without the O(N^2) exchanges
        that carry N entries to each of N nodes, which dominate the set-up of a large
        cluster. What differs from a gossiped state: no message is sent and no round
        runs (counters, RNGs and the clock stay as they are), a copy's ``renewed_at``
        is its origin's exactly (gossip carries ages rounded to the millisecond, so a
        gossiped copy may be off by up to 0.5 ms per hop), and every copy is seen now,
        in the node's current round. Call it on a fresh cluster, before any fault.
        """
        now = self.clock.now()
        own = [e for node in self._nodes.values() if (e := node.store.get(node.address, now)) is not None]
        with _cycle_collector_paused():
            for node in self._nodes.values():
                node.store.apply(own, now, node.stats.rounds)

    # -- time ------------------------------------------------------------------------------

    @property
    def synchronous(self) -> bool:
        """Whether rounds are synchronous (the theory's model: eager push off) or out of phase."""
        return self._synchronous

    @synchronous.setter
    def synchronous(self, value: bool) -> None:
        self._synchronous = value
        for node in self._nodes.values():
            node.rumors.enabled = node.config.eager_push and not value

    def _later(self, send: Callable[[], object]) -> bool:
        """Schedule one rumor send ``rumor_latency`` from now (a node's ``rumors.dispatch``)."""
        heapq.heappush(self._mail, (self.clock.now() + self.rumor_latency, next(self._seq), send))
        return True

    def _deliver(self, until: float) -> None:
        """Deliver the rumors due by ``until``, in time order, each at its instant."""
        mail = self._mail
        while mail and mail[0][0] <= until:
            due, _, send = heapq.heappop(mail)
            self.clock.set(max(due, self.clock.now()))
            send()

    def step(self, rounds: int = 1) -> None:
        """Advance virtual time by ``rounds`` intervals, every live node gossiping once per round."""
        with _cycle_collector_paused():
            for _ in range(rounds):
                self._round()

    def _round(self) -> None:
        """Run one round: every live node gossips once, at its phase (or all at the end)."""
        interval = self.config.interval
        start = self.clock.now()
        end = start + interval
        self.rounds += 1
        live = [n for n in self._order if n not in self._down]
        if self.synchronous:
            self.clock.set(end)
            for n in live:
                self._nodes[n].deferred = []
        for n in live:
            if not self.synchronous:
                self._deliver(start + self._phase[n] * interval)
                self.clock.set(start + self._phase[n] * interval)
            self._nodes[n].run_round()
        self._deliver(end)
        self.clock.set(end)
        if self.synchronous:
            for n in live:
                self._nodes[n].merge_deferred()

    def settle(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, gossiping all along."""
        self.step(max(1, round(seconds / self.config.interval)))

    def run_until(self, predicate, max_rounds: int) -> int | None:
        """Step until ``predicate()`` holds; return the rounds it took, None if it never did."""
        for r in range(max_rounds + 1):
            if predicate():
                return r
            if r < max_rounds:
                self.step()
        return None

    # -- client operations -------------------------------------------------------------------

    def register(self, node: str, address: str, app_name: str, last_update: int | None = None) -> dict:
        entry = self.node(node).register(address, app_name, last_update).entry
        return {"address": address, "app_name": entry.app_name, "version": entry.version}

    def deregister(self, node: str, address: str) -> dict:
        entry = self.node(node).deregister(address).entry
        return {"address": address, "deregistered": True, "version": entry.version}

    def views(self, nodes: Iterable[str] | None = None) -> dict[str, dict[str, dict]]:
        """Return every live node's listing, shaped like GET /registry/list."""
        out = {}
        for name in nodes or self.live_nodes():
            node = self.node(name)
            now = node.clock.now()
            out[name] = {
                a: {"app_name": e.app_name, "last_update": e.last_update,
                    "status": e.status(now, node.lease), "version": e.version}
                for a, e in sorted(node.listing().items())
            }
        return out

    def digests(self, nodes: Iterable[str] | None = None) -> dict[str, tuple[str, int]]:
        """Return (digest, entries) of every live node, like GET /registry/digest."""
        out = {}
        for name in nodes or self.live_nodes():
            listing = self.node(name).listing()
            out[name] = (protocol.view_hash(listing.values()), len(listing))
        return out

    def live_nodes(self) -> list[str]:
        return [n for n in self._nodes if n not in self._down]

    def holders(self, address: str) -> list[str]:
        """Return the live nodes that list ``address``."""
        return [n for n in self.live_nodes() if address in self.node(n).listing()]

    # -- faults ------------------------------------------------------------------------------

    def partition(self, groups: Sequence[Iterable[str]]) -> None:
        """Cut every link between groups (unlisted nodes form one more group)."""
        full = validate_groups(groups, self.nodes)
        for src, dst in partition_cuts(full):
            self.network.cut(self.address(src), self.address(dst))

    def isolate(self, node: str) -> None:
        self.partition([[node]])

    def partition_one_way(self, src: str, dst: str) -> None:
        """Drop exchanges that ``src`` starts towards ``dst``; ``dst`` still reaches ``src``."""
        self.network.cut(self.address(src), self.address(dst))

    def heal(self) -> None:
        """Restore every link; remove loss and delays."""
        self.network.heal()

    def cut_links(self, links: Iterable[tuple[str, str]]) -> None:
        """Cut each directed link ``(src, dst)``: what src starts towards dst is dropped (adds to other cuts)."""
        for src, dst in links:
            self.network.cut(self.address(src), self.address(dst))

    def delay(self, node: str, ms: float) -> None:
        """Delay what ``node`` sends by ``ms`` milliseconds (0 removes it): replies later than a timeout are lost."""
        self.network.set_delay(self.address(node), ms / 1000.0)

    def loss(self, percent: float) -> None:
        """Drop this share of messages on every link."""
        self.network.set_loss(percent / 100.0)

    def kill(self, node: str) -> None:
        """Stop a node: it neither gossips nor answers; its store is kept (as on disk)."""
        self._set_down(node, True)

    stop = kill

    def start(self, node: str) -> None:
        """Start a killed node again on its store; once it learns it was marked down, it re-registers."""
        self._set_down(node, False)

    restart = start

    def pause(self, node: str) -> None:
        """Freeze a node: it neither gossips nor answers, and keeps its whole state."""
        self._set_down(node, True)

    def unpause(self, node: str) -> None:
        """Thaw a paused node: it gossips and answers again from the state it was frozen in."""
        self._set_down(node, False)

    def _set_down(self, node: str, down: bool) -> None:
        address = self.address(node)
        (self._down.add if down else self._down.discard)(node)
        self.network.set_down(address, down)

    def skew(self, node: str, seconds: float) -> None:
        """Shift one node's wall clock."""
        self.node(node).clock.offset = seconds

    # -- convergence ----------------------------------------------------------------------------

    def check(self, nodes=None, expect_present: Iterable[str] = (), expect_absent: Iterable[str] = ()):
        names = list(nodes or self.live_nodes())
        return convergence.check(self.digests(names), self.views(names), (), expect_present, expect_absent)

    def wait_converged(
        self,
        timeout: float = 30.0,
        nodes: Iterable[str] | None = None,
        expect_present: Iterable[str] = (),
        expect_absent: Iterable[str] = (),
    ) -> convergence.Report:
        """Run rounds until the nodes agree (and expectations hold); return the report that says so.

        Raises ConvergenceTimeout, carrying the last report, after ``timeout`` virtual seconds.
        """
        names = list(nodes) if nodes is not None else None
        present, absent = list(expect_present), list(expect_absent)
        max_rounds = max(1, int(timeout / self.config.interval))
        report = None
        for _ in range(max_rounds + 1):
            report = self.check(names, present, absent)
            if report.converged:
                return report
            self.step()
        raise ConvergenceTimeout(f"simulated nodes did not converge within {timeout:g} s ({max_rounds} rounds)", report)
