"""Where the dashboard reads a cluster and applies its controls: a simulated cluster or a running one.

A source offers one reading of every node (``read``), the first-seen instants of one
address (``seen``), the controls (``act``: the harness operations by name), and ``run``,
its one poller: it calls ``changed()`` whenever something may have changed, until told
to stop. ``SimSource`` hosts a ``SimCluster`` and steps it in real time; ``ClusterSource``
watches the nodes of a ``Cluster`` (Docker or swarm) with one blocking listing query per
node (``GET /registry/list?index=&wait=``) and reads states and ``/metrics`` every few
seconds, whatever the number of open pages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# The node's watch header (node.watch.INDEX_HEADER), spelled here so the harness loads no Flask.
INDEX_HEADER = "X-Registry-Index"


@dataclass
class Reading:
    """One node as the dashboard draws it."""

    state: str  # running, paused, exited (killed or stopped), missing, unreachable
    digest: str | None = None
    entries: int | None = None
    rounds: float | None = None  # counters since the node started; rates are the hub's
    bytes: float | None = None
    listed: frozenset[str] = frozenset()  # addresses the node lists


OPS = ("register", "deregister", "partition", "one_way", "heal", "kill", "restart", "pause", "unpause", "loss")


class SimSource:
    """A ``SimCluster`` hosted by the dashboard, one round per interval of real time."""

    backend = "sim"

    def __init__(self, nodes: int = 20, seed: int = 0, interval: float | None = None) -> None:
        import dataclasses  # noqa: PLC0415

        from ..sim import SIM, SimCluster  # noqa: PLC0415

        config = SIM if interval is None else dataclasses.replace(SIM, interval=interval)
        self.sim = SimCluster(nodes, config=config, seed=seed)
        self.sim.warm()
        self.name = f"sim-{nodes}"
        self.fanout = config.fanout
        self.interval = config.interval
        self._lock = threading.Lock()
        self._state: dict[str, str] = {}  # node -> "exited" or "paused" while down

    @property
    def nodes(self) -> list[str]:
        return self.sim.nodes

    def run(self, changed: Callable[[], None], stop: threading.Event) -> None:
        """Step the simulation one round per interval until ``stop``; a failed round is logged."""
        while not stop.wait(self.interval):
            try:
                with self._lock:
                    self.sim.step()
                changed()
            except Exception:
                log.exception("simulated round failed")

    def read(self) -> dict[str, Reading]:
        from node import protocol  # noqa: PLC0415

        out = {}
        with self._lock:
            for name in self.sim.nodes:
                node = self.sim.node(name)
                stats = node.stats
                if name in self._state:
                    out[name] = Reading(self._state[name], rounds=stats.rounds)
                    continue
                listing = node.listing()
                out[name] = Reading("running", protocol.view_hash(listing.values()), len(listing), stats.rounds,
                                    stats.bytes_sent + stats.bytes_received, frozenset(listing))
        return out

    def seen(self, address: str) -> dict[str, float]:
        """Return {node: first-seen instant of ``address``} over the running nodes that list it."""
        out = {}
        with self._lock:
            for name in self.sim.live_nodes():
                node = self.sim.node(name)
                record = node.store.snapshot().seen.get(address)
                if record is not None and address in node.listing():
                    out[name] = record.at
        return out

    def act(self, op: str, **args: Any) -> Any:
        """Apply one control to the simulation (the SimCluster's own operations)."""
        with self._lock:
            sim = self.sim
            if op in ("kill", "pause"):
                getattr(sim, op)(args["node"])
                self._state[args["node"]] = "exited" if op == "kill" else "paused"
            elif op in ("restart", "unpause"):
                (sim.start if op == "restart" else sim.unpause)(args["node"])
                self._state.pop(args["node"], None)
            elif op == "loss":  # the simulated network drops on every link alike
                sim.loss(args["percent"])
            elif op == "one_way":
                sim.partition_one_way(args["src"], args["dst"])
            elif op == "partition":
                sim.partition(args["groups"])
            elif op == "heal":
                sim.heal()
                sim.loss(0)
            else:
                return getattr(sim, op)(**args)
        return None

    def close(self) -> None:
        """Nothing to release: the simulation lives in this process."""


class ClusterSource:
    """The nodes of a running ``Cluster``: a watch per node, states and metrics every ``every`` seconds."""

    def __init__(self, cluster, every: float = 2.0, wait: float = 10.0) -> None:
        self.cluster = cluster
        self.backend = "swarm" if "swarm" in type(cluster.backend).__name__.lower() else "docker"
        self.name = cluster.name
        self.fanout = cluster.fanout or 3  # the node's preset (node.config.Config.fanout)
        self.interval = cluster.interval or 1.0  # ... and interval
        self.every = every
        self.wait = wait
        self._lock = threading.Lock()
        self._states: dict[str, str] = {}
        self._counters: dict[str, tuple[float | None, float | None]] = {}
        self._views: dict[str, tuple[str, int, frozenset[str]]] = {}  # node -> digest, entries, listed
        self._paused: set[str] = set()

    @property
    def nodes(self) -> list[str]:
        return self.cluster.nodes

    def run(self, changed: Callable[[], None], stop: threading.Event) -> None:
        """Start one watcher per node, then read states and metrics every ``every`` s until ``stop``."""
        for name in self.nodes:
            threading.Thread(target=self._watch, args=(name, changed, stop), daemon=True,
                             name=f"watch-{name}").start()
        while not stop.is_set():
            try:
                self._poll_states()
                changed()
            except Exception:
                log.exception("reading the cluster's states and metrics failed")
            stop.wait(self.every)

    def _poll_states(self) -> None:
        states = self.cluster.states()
        found = self.cluster.metrics([n for n, s in states.items() if s == "running"])
        with self._lock:
            self._states = states
            for name in states:
                values = found.get(name, {})
                rounds = values.get("sd_gossip_rounds_total")
                sent = values.get("sd_gossip_bytes_sent_total", 0.0) + values.get("sd_gossip_bytes_received_total", 0.0)
                self._counters[name] = (rounds, sent if rounds is not None else None)

    def _watch(self, name: str, changed: Callable[[], None], stop: threading.Event) -> None:
        """Hold a blocking listing query on node ``name``; on every new index, record its view."""
        import requests  # noqa: PLC0415

        session = requests.Session()
        index: str | None = None
        while not stop.is_set():
            try:
                url = self.cluster.url(name)
                params = {"index": index, "wait": f"{self.wait:g}s"} if index is not None else {}
                resp = session.get(f"{url}/registry/list", params=params, timeout=(2.0, self.wait + 5.0))
                if resp.status_code == 429:  # the node holds all the watches it can: back off
                    stop.wait(float(resp.headers.get("Retry-After", "1")))
                    continue
                resp.raise_for_status()
                new = resp.headers.get(INDEX_HEADER)
                if new is None or new != index:
                    index = new
                    self._record_view(name, resp.json(), session, url)
                    changed()
                if new is None:  # a node without the watch: poll it gently instead
                    stop.wait(self.every)
            except Exception as exc:
                log.debug("watch on %s: %s", name, exc)
                index = None
                with self._lock:
                    self._views.pop(name, None)
                stop.wait(1.0)

    def _record_view(self, name: str, listing: dict, session, url: str) -> None:
        digest = session.get(f"{url}/registry/digest", timeout=5).json()
        with self._lock:
            self._views[name] = (digest["digest"], digest["entries"], frozenset(listing))

    def read(self) -> dict[str, Reading]:
        with self._lock:
            out = {}
            for name in self.nodes:
                state = self._states.get(name, "running")
                if state == "running" and name in self._paused:
                    state = "paused"  # paused by SIGSTOP: the container still runs
                rounds, sent = self._counters.get(name, (None, None))
                view = self._views.get(name)
                if state == "running" and view is None:
                    state = "unreachable"
                digest, entries, listed = view if view and state == "running" else (None, None, frozenset())
                out[name] = Reading(state, digest, entries, rounds, sent, listed)
            return out

    def seen(self, address: str) -> dict[str, float]:
        """Return {node: first-seen instant of ``address``} from the nodes' /registry/entries."""
        with self._lock:
            holders = [n for n, v in self._views.items() if address in v[2]]
        held = self.cluster.http.gather(holders, "/registry/entries")
        return {n: e[address]["seen_at"] for n, e in held.items()
                if isinstance(e, dict) and isinstance(e.get(address), dict) and e[address].get("seen_at") is not None}

    def act(self, op: str, **args: Any) -> Any:
        """Apply one control through the Cluster's own operations (faults checked for effect)."""
        c = self.cluster
        if op == "partition":
            return c.partition(args["groups"])
        if op == "one_way":
            return c.partition_one_way(args["src"], args["dst"])
        if op == "loss":
            return c.loss(args["node"], args["percent"])
        if op == "restart":
            node = args["node"]
            return c.start(node) if c.state(node) != "running" else c.restart(node)
        if op in ("pause", "unpause"):
            result = getattr(c, op)(args["node"])
            with self._lock:
                (self._paused.add if op == "pause" else self._paused.discard)(args["node"])
            return result
        return getattr(c, op)(**args)

    def close(self) -> None:
        self.cluster.http.close()


def now() -> float:
    """Wall-clock seconds (the dashboard's own clock for the timeline)."""
    return time.time()
