"""The Docker backend: trials on real containers, read through the ``Cluster`` facade only.

Each node stamps when it first stored the registration (``seen_at`` of
``/registry/entries``), so the harness only collects those instants; gossip counters come
from ``Cluster.metrics``. Nothing here imports Docker: the cluster comes from the factory.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from node.protocol import NODE_APP

from ..errors import HarnessError
from ..metrics import delta
from ..topology import node_address
from ..wait import wait_until
from . import nemesis
from .model import Sweep, Trial, probe_address, round_of

ROUNDS = "sd_gossip_rounds_total"
EXCHANGES = ("sd_gossip_exchanges_ok_total", "sd_gossip_exchanges_failed_total")
BYTES = "sd_gossip_bytes_sent_total"


def counter_delta(before: Mapping[str, Mapping[str, float]],
                  after: Mapping[str, Mapping[str, float]]) -> tuple[int, int]:
    """(exchanges, bytes) gained between two readings, summed over nodes; a restarted node counts from zero."""
    def gain(node: str, name: str) -> float:
        d = delta(before.get(node, {}), after[node], name)
        return after[node].get(name, 0.0) if d < 0 else d

    ex = sum(gain(x, name) for x in after for name in EXCHANGES)
    return int(ex), int(sum(gain(x, BYTES) for x in after))


def round_rate(before: Mapping[str, Mapping[str, float]], after: Mapping[str, Mapping[str, float]],
               seconds: float) -> float | None:
    """Mean gossip rounds per node per second between two readings (restarted nodes left out)."""
    rates = [(a[ROUNDS] - before[x][ROUNDS]) / seconds for x, a in after.items()
             if ROUNDS in a and ROUNDS in before.get(x, {}) and a[ROUNDS] >= before[x][ROUNDS]]
    return sum(rates) / len(rates) if rates and seconds > 0 else None


class DockerBackend:
    """One Docker cluster for one (N, fanout, interval, loss), reused across repeats."""

    backend = "docker"

    def __init__(self, n: int, fanout: int, interval: float, loss: float, seed: int, sweep: Sweep,
                 cluster_factory: Callable, timeline: Path | None):
        self.n, self.fanout, self.interval, self.loss, self.seed, self.sweep = n, fanout, interval, loss, seed, sweep
        self.cluster = cluster_factory(nodes=n, name=f"{sweep.name}-n{n}-f{fanout}", image=sweep.image,
                                       interval=interval, fanout=fanout,
                                       timeline=timeline if timeline is not None else False,
                                       start_timeout=sweep.start_timeout)
        self.setup_s = 0.0

    def __enter__(self):
        t = time.perf_counter()
        self.cluster.__enter__()
        self.setup_s = time.perf_counter() - t
        return self

    def __exit__(self, *exc):
        return self.cluster.__exit__(*exc)

    def _counters(self) -> dict[str, dict[str, float]]:
        """Every answering node's metric samples."""
        return self.cluster.metrics(self.cluster.nodes)

    def _put_loss(self) -> None:
        """Drop ``loss`` % of the packets every node receives (heal removes it)."""
        if self.loss:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda x: self.cluster.loss(x, self.loss), self.cluster.nodes))

    def _members_complete(self) -> tuple[bool, str]:
        """Whether every node lists every node as a healthy member; else who lacks how many."""
        want = {node_address(x) for x in self.cluster.nodes}
        views = self.cluster.views(self.cluster.nodes, path="/registry/entries")
        lacking = {x: "no answer" for x in self.cluster.nodes if x not in views}
        for x, v in views.items():
            have = {a for a, e in v.items() if e.get("app_name") == NODE_APP and e.get("status") == "healthy"
                    and not e.get("deleted")}
            if want - have:
                lacking[x] = f"lacks {len(want - have)} nodes"
        return not lacking, "; ".join(f"{k}: {v}" for k, v in list(lacking.items())[:5])

    def prepare(self) -> None:
        """Wait for full membership, then put the loss on every node."""
        t = time.perf_counter()
        self._wait_members()
        self._put_loss()
        self.setup_s += time.perf_counter() - t

    def _wait_members(self) -> None:
        outcome = wait_until(self._members_complete, passed=lambda r: r[0], timeout=self.sweep.ready_timeout,
                             interval=0.25)
        if not outcome.ok:
            raise HarnessError(f"docker N={self.n}: membership incomplete after {self.sweep.ready_timeout:g}s: "
                               f"{outcome.last[1] if outcome.last else 'no answer'}")

    def rest(self) -> float:
        """Bytes per node per second over ``rest_rounds`` rounds with no new registration."""
        b0, t0 = self._counters(), time.time()
        time.sleep(self.sweep.rest_rounds * self.interval)
        b1, t1 = self._counters(), time.time()
        return counter_delta(b0, b1)[1] / self.n / (t1 - t0)

    def trial(self, mode: str, repeat: int, index: int, rng: random.Random) -> Trial:
        """Register a fresh address at a random node and collect every node's first-seen instant."""
        c, sweep = self.cluster, self.sweep
        wall = time.perf_counter()
        self._wait_members()
        fault = nemesis.Nemesis(c, nemesis.plan(sweep.fault, c.nodes, rng), time.time, self._put_loss)
        origin, address = fault.plan.origin, probe_address(self.seed, index)
        fault.apply()
        before, tb = self._counters(), time.time()
        t_reg = time.time()
        c.register(origin, address, "probe")
        seen_at: dict[str, float | None] = {x: None for x in c.nodes}
        node_round: dict[str, int | None] = {x: None for x in c.nodes}
        try:
            self._collect(address, t_reg, seen_at, node_round, fault)
        finally:
            fault.undo()
        after, ta = self._counters(), time.time()
        ex, by = counter_delta(before, after)
        origin_seen = seen_at[origin]
        t0 = origin_seen if origin_seen is not None else t_reg
        seconds = {x: None if s is None else max(0.0, s - t0) for x, s in seen_at.items()}
        frac = {x: None if s is None else s / self.interval for x, s in seconds.items()}
        rounds = {x: None if f is None else round_of(f) for x, f in frac.items()}
        return Trial("docker", "real", self.n, self.fanout, self.interval, self.loss, sweep.fault, repeat, self.seed,
                     origin, address, rounds, frac, seconds, node_round, ex, by, ta - tb,
                     time.perf_counter() - wall, fault.faults(t0, self.interval),
                     round_rate(before, after, ta - tb))

    def _collect(self, address: str, t_reg: float, seen_at: dict[str, float | None],
                 node_round: dict[str, int | None], fault: nemesis.Nemesis) -> None:
        """Poll until every node has stamped ``address`` or the trial times out; undo the fault on time.

        The instants come from the nodes (seen_at), so polling only collects them: poll
        rarely, backing off, to keep the harness's requests from slowing the gossip.
        """
        undo_at = t_reg + self.sweep.fault_rounds * self.interval
        deadline = t_reg + self.sweep.trial_timeout
        gap = max(0.25, 2 * self.interval)
        next_poll = t_reg + gap
        while time.time() < deadline:
            now = time.time()
            if fault.active and now >= undo_at:
                fault.undo()
            if now < next_poll:
                wake = min(next_poll, undo_at) if fault.active else next_poll
                time.sleep(max(0.0, min(wake, deadline) - now))
                continue
            # a killed victim cannot answer before its restart: do not wait on it
            skip = fault.plan.victim if fault.active else None
            if self._read_seen(address, seen_at, node_round, skip):
                return
            gap = min(2.0, gap * 1.5)
            next_poll = time.time() + gap

    def _read_seen(self, address: str, seen_at: dict[str, float | None], node_round: dict[str, int | None],
                   skip: str | None) -> bool:
        """Ask the nodes still missing ``address`` for it; return whether every node has it now."""
        missing = [x for x, s in seen_at.items() if s is None and x != skip]
        for x, view in self.cluster.views(missing, path="/registry/entries").items():
            e = view.get(address)
            if e is not None and e.get("seen_at") is not None:
                seen_at[x], node_round[x] = float(e["seen_at"]), e.get("seen_round")
        return all(s is not None for s in seen_at.values())
