"""The simulator backend: trials on a ``SimCluster`` (real node code, virtual clock), in either mode."""

from __future__ import annotations

import dataclasses
import random
import time

from ..errors import HarnessError
from ..sim import SIM, SimCluster
from . import nemesis
from .model import Sweep, Trial, probe_address


class SimBackend:
    """One SimCluster for one (N, fanout, interval, loss); trials in either mode.

    Membership forms by gossip from the seeds up to ``GOSSIP_BOOTSTRAP_MAX`` nodes. A
    larger cluster starts warm (``SimCluster.warm``: the state such a bootstrap reaches,
    without its O(N^2) exchanges) and then runs ``BOOTSTRAP_ROUNDS`` real rounds, the
    rounds a gossip bootstrap takes at those sizes, so virtual time, round counters and
    the first renewals line up with a gossiped start.
    """

    backend = "sim"
    GOSSIP_BOOTSTRAP_MAX = 100
    BOOTSTRAP_ROUNDS = 3  # what gossip takes with the experiment's seeds, N = 40 to 1000 (2 below 40)

    def __init__(self, n: int, fanout: int, interval: float, loss: float, seed: int, sweep: Sweep):
        self.n, self.fanout, self.interval, self.loss, self.sweep = n, fanout, interval, loss, sweep
        self.seed = seed
        cfg = dataclasses.replace(SIM, fanout=fanout, interval=interval)
        self.cluster = SimCluster(n, config=cfg, seed=seed)
        self.setup_s = 0.0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _members_complete(self) -> bool:
        want = self.n - 1
        return all(len(self.cluster.node(x).peers()) >= want for x in self.cluster.live_nodes())

    def prepare(self) -> None:
        """Gossip until every node knows every other (the membership bootstrap), then add loss.

        Above ``GOSSIP_BOOTSTRAP_MAX`` nodes the cluster starts warm instead (see the class).
        """
        t = time.perf_counter()
        if self.n > self.GOSSIP_BOOTSTRAP_MAX:
            self.cluster.warm()
            self.cluster.step(self.BOOTSTRAP_ROUNDS)
        if self.cluster.run_until(self._members_complete, self.sweep.trial_rounds) is None:
            raise HarnessError(f"sim N={self.n}: membership incomplete after {self.sweep.trial_rounds} rounds")
        self._put_loss()
        self.setup_s = time.perf_counter() - t

    def _put_loss(self) -> None:
        if self.loss:
            self.cluster.loss(self.loss)

    def _counters(self) -> tuple[int, int]:
        """(exchanges, bytes) so far, summed over nodes; each byte counted once, by its sender."""
        ex = by = 0
        for x in self.cluster.nodes:
            s = self.cluster.node(x).stats
            ex += s.exchanges_ok + s.exchanges_failed
            by += s.bytes_sent
        return ex, by

    def rest(self) -> float:
        """Bytes per node per second over ``rest_rounds`` quiet rounds."""
        _, b0 = self._counters()
        self.cluster.step(self.sweep.rest_rounds)
        _, b1 = self._counters()
        return (b1 - b0) / self.n / (self.sweep.rest_rounds * self.interval)

    def trial(self, mode: str, repeat: int, index: int, rng: random.Random) -> Trial:
        """Register a fresh address at a random node and step until every node holds it."""
        c, sweep = self.cluster, self.sweep
        wall = time.perf_counter()
        c.synchronous = mode == "sync"
        # A registration lands at a random instant of the nodes' timers: new phases each
        # trial (the same, in distribution, as registering at a random point of a round).
        c.rephase()
        if c.run_until(self._members_complete, sweep.trial_rounds) is None:
            raise HarnessError(f"sim N={self.n}: membership incomplete before trial {index}")
        fault = nemesis.Nemesis(c, nemesis.plan(sweep.fault, c.nodes, rng), c.clock.now, self._put_loss)
        origin, address = fault.plan.origin, probe_address(self.seed, index)
        fault.apply()
        ex0, by0 = self._counters()
        t0, r0 = c.clock.now(), c.rounds
        c.register(origin, address, "probe")
        rounds: dict[str, int | None] = {x: None for x in c.nodes}
        rounds[origin] = 0
        try:
            self._spread(address, rounds, fault)
        finally:
            fault.undo()
        ex1, by1 = self._counters()
        seconds, frac, node_rounds = self._first_seen(address, rounds, t0)
        return Trial("sim", mode, self.n, self.fanout, self.interval, self.loss, sweep.fault, repeat, self.seed,
                     origin, address, rounds, frac, seconds, node_rounds, ex1 - ex0, by1 - by0,
                     (c.rounds - r0) * self.interval, time.perf_counter() - wall,
                     fault.faults(t0, self.interval), 1 / self.interval)

    def _spread(self, address: str, rounds: dict[str, int | None], fault: nemesis.Nemesis) -> None:
        """Step round by round, noting the round each node first holds ``address`` in.

        The fault is undone after ``fault_rounds`` rounds; at most ``trial_rounds`` rounds run.
        """
        c, r0 = self.cluster, self.cluster.rounds
        for _ in range(self.sweep.trial_rounds):
            if all(r is not None for r in rounds.values()):
                return
            c.step()
            k = c.rounds - r0
            for x, r in rounds.items():
                if r is None and address in c.node(x).store.snapshot().entries:
                    rounds[x] = k
            if k == self.sweep.fault_rounds:
                fault.undo()

    def _first_seen(self, address: str, rounds: dict[str, int | None], t0: float) -> tuple[dict, dict, dict]:
        """Per node: seconds after ``t0``, fractional rounds and own round counter when it first stored it."""
        seconds: dict[str, float | None] = {}
        frac: dict[str, float | None] = {}
        node_rounds: dict[str, int | None] = {}
        for x in self.cluster.nodes:
            seen = self.cluster.node(x).store.snapshot().seen.get(address) if rounds[x] is not None else None
            seconds[x] = None if seen is None else seen.at - t0
            frac[x] = None if seen is None else (seen.at - t0) / self.interval
            node_rounds[x] = None if seen is None else seen.round
        return seconds, frac, node_rounds
