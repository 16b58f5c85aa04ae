"""A cluster of registry nodes on a backend (Docker by default), with faults checked for effect.

``Cluster`` is a facade: the backend (``harness.backends``) runs the nodes, the node
client (``harness.nodeclient``) talks HTTP to them, network faults are planned as
data (``harness.netfaults.plan``) and run and probed by one executor, and waits are
``harness.readiness``. Nodes are named ``n1..nN`` everywhere.

What survives what (Docker):

- ``stop``/``kill`` + ``start`` and ``restart`` give the container a fresh network
  namespace: its own iptables rules, loss and delay are gone, and its runtime
  clock skew resets to SD_CLOCK_OFFSET. Partition and one-way cuts are installed on
  both ends, so the peers' rules keep them in force. Data in /data survives.
- ``pause`` keeps everything; a paused node cannot be exec'd into, so rules are
  installed on the running nodes only (which is enough, see above).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from . import backends, readiness, topology
from .backends import DEFAULT_IMAGE, Backend, Deployment, Node, Spec
from .backends.engine import (  # noqa: F401 - the engine's names, kept importable from here
    LABEL_CLUSTER,
    LABEL_HARNESS,
    LABEL_NODE,
    LABEL_RUN,
    NODE_PORT,
    EngineBackend,
    connect,
    is_local,
    running_cluster_sizes,
)
from .convergence import Report
from .errors import FaultNotApplied, HarnessError, NodeNotFound
from .netfaults import FaultExecutor, NetworkFaults, Snapshot
from .nodeclient import NodeClient
from .procfaults import ProcessFaults
from .timeline import Timeline, default_path

LOG_TAIL = 40
# Nodes launched at once.
LAUNCH_WORKERS = 8
START_WAVE = max(8, 4 * (os.cpu_count() or 1))
"""Nodes started at once by ``Cluster.up``; the next wave waits until they answer /health."""
_CLUSTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")

__all__ = ["Cluster", "Node", "gc", "validate_name", "connect", "is_local", "running_cluster_sizes"]


def validate_name(name: str) -> str:
    """Return ``name`` if it is usable in Docker object names, else raise HarnessError."""
    if not isinstance(name, str) or not _CLUSTER_NAME.match(name):
        raise HarnessError(f"invalid cluster name {name!r}: use 1-40 of a-z 0-9 _ . - starting with a letter or digit")
    return name


def gc(client=None, cluster: str | None = None) -> dict:
    """Remove containers, volumes and networks labelled ``sd.harness=1`` (of one cluster or all)."""
    return EngineBackend(connect(client)).gc(cluster)


class Cluster:
    """N registry nodes on a private network, plus faults and waits.

    Use as a context manager: entering starts the cluster (``up``), leaving removes
    every container, volume and network it made, whatever happened in between.
    """

    def __init__(
        self,
        nodes: int = 3,
        name: str = "default",
        image: str = DEFAULT_IMAGE,
        client=None,
        env: Mapping[str, str] | None = None,
        interval: float | None = None,
        fanout: int | None = None,
        ttl: float | None = None,
        timeline: str | os.PathLike | Literal[False] | None = None,
        start_timeout: float = 60.0,
        command: Sequence[str] | None = None,
        backend: str | Backend = "docker",
        deployment: Deployment | None = None,
        init_swarm: bool = False,
    ):
        """Describe a cluster; nothing is created until ``up()``.

        ``timeline`` None writes to ``.harness/<name>/timeline.jsonl``, False disables
        it. ``command`` overrides the image's command (for stand-in images).
        ``backend`` names where nodes run ("docker", "swarm") or is a Backend instance;
        ``init_swarm`` lets the swarm backend make a single-node swarm (left on ``down``).
        ``deployment`` is a cluster the backend already runs (see ``attach``).
        """
        if int(nodes) < 1:
            raise HarnessError(f"a cluster needs at least one node, got {nodes}")
        self.name = validate_name(name)
        self.size = int(nodes)
        self.spec = deployment.spec if deployment is not None else Spec(
            self.name, image, interval, fanout, ttl, dict(env or {}), list(command) if command else None)
        self.deployment = deployment or Deployment(self.spec, {})
        self.backend = backends.get(backend, client, **({"init_swarm": True} if init_swarm else {}))
        self.start_timeout = start_timeout
        self.timeline = Timeline(None if timeline is False else timeline or default_path(self.name))
        self.http = NodeClient(self.url)
        self.faults = FaultExecutor(self.backend, self.node, self.timeline, self.spec.image)
        self.procs = ProcessFaults(self.backend, self.node, self._wait_healthy, self.faults.stopped, self.timeline)
        self.net = NetworkFaults(self.faults, self._snapshot, self.timeline)

    @classmethod
    def attach(cls, name: str = "default", client=None, timeline=None, backend: str | Backend = "docker") -> Cluster:
        """Return a Cluster for nodes already running under ``name`` (made by another process)."""
        chosen = backends.get(backend, client)
        found = chosen.find(validate_name(name))
        return cls(len(found.nodes), name, timeline=timeline, backend=chosen, deployment=found)

    image = property(lambda self: self.spec.image, doc="The node image.")
    run_id = property(lambda self: self.spec.run_id, doc="Value of the sd.run label of this run.")
    interval = property(lambda self: self.spec.interval, doc="SD_INTERVAL of the nodes (None: preset).")
    fanout = property(lambda self: self.spec.fanout, doc="SD_FANOUT of the nodes (None: preset).")
    ttl = property(lambda self: self.spec.ttl, doc="SD_TTL of the nodes (None: preset).")
    client = property(lambda self: getattr(self.backend, "client", None), doc="The backend's Docker client.")

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Cluster:
        return self.up()

    def __exit__(self, *exc_info) -> Literal[False]:
        self.down()
        return False

    def up(self) -> Cluster:
        """Create network and nodes, start them in waves, wait for /health.

        A wave is ``START_WAVE`` nodes started in parallel; the next starts once they all
        answer /health. Starting a Python node takes about half a second of CPU: a hundred
        at once starve the host for a minute, and the nodes that are up meanwhile time out
        on the others, suspect them and mark them down.

        On any failure (or Ctrl-C) everything created so far is removed before the
        error propagates.
        """
        self.backend.prepare(self.spec, self.size)
        names = topology.node_names(self.size)
        try:
            self.deployment = self.backend.create(self.spec)
            seeds = names[:2]
            for i in range(0, len(names), START_WAVE):
                wave = names[i:i + START_WAVE]
                with ThreadPoolExecutor(max_workers=LAUNCH_WORKERS) as pool:
                    list(pool.map(lambda n: self._launch(n, [s for s in seeds if s != n]), wave))
                self._wait_healthy(wave)
        except BaseException:
            self.down()
            raise
        self.timeline.record("up", cluster=self.name, run=self.run_id, nodes=names, subnet=self.deployment.subnet,
                             image=self.image, interval=self.interval, fanout=self.fanout, ttl=self.ttl)
        return self

    def down(self) -> dict:
        """Remove this cluster's containers, volumes and network; return what was removed."""
        removed = self.backend.remove(self.name)
        self.deployment.nodes.clear()
        self.http.close()
        self.timeline.record("down", cluster=self.name, run=self.run_id, **removed)
        return removed

    def add_node(self) -> str:
        """Start one more node that knows only n1 as its seed; return its name once healthy."""
        name = f"n{max((topology.node_index(n) for n in self.nodes), default=0) + 1}"
        self._launch(name, ["n1"] if name != "n1" else [])
        try:
            self._wait_healthy([name])
        finally:
            self.size = len(self.nodes)
        self.timeline.record("add_node", node=name, seeds=["n1"])
        return name

    def _launch(self, name: str, seeds: Sequence[str]) -> Node:
        node = self.backend.launch(self.spec, self.deployment, name, seeds)
        self.timeline.record("node_started", node=name, ip=node.ip, url=self.url(name), seeds=list(seeds))
        return node

    def _wait_healthy(self, names: Sequence[str]) -> None:
        readiness.wait_healthy(names, self.http.healthy, self.state, self.logs, self.start_timeout, self.name)

    # ------------------------------------------------------------------ nodes

    @property
    def nodes(self) -> list[str]:
        """Names of the cluster's nodes, n1 first."""
        return topology.sort_nodes(self.deployment.nodes)

    def node(self, name: str) -> Node:
        """Return the Node called ``name`` or raise NodeNotFound."""
        try:
            return self.deployment.nodes[name]
        except (KeyError, TypeError):
            raise NodeNotFound(f"no node {name!r} in cluster {self.name!r} (nodes: {', '.join(self.nodes)})") from None

    def url(self, node: str) -> str:
        """Base URL (from the host) of node ``node``."""
        return self.backend.url(self.node(node))

    def state(self, node: str) -> str:
        """State of the node: running, paused, exited, ..."""
        return self.backend.state(self.node(node))

    def states(self) -> dict[str, str]:
        """State of every node ("missing" when its container is gone)."""
        found = self.backend.states(self.name)
        return {n: found.get(n, "missing") for n in self.nodes}

    def logs(self, node: str, tail: int = LOG_TAIL) -> str:
        """Return the last ``tail`` lines of the node's log."""
        return self.backend.logs(self.node(node), tail)

    def _running(self) -> list[str]:
        return [n for n, s in self.states().items() if s == "running"]

    # ------------------------------------------------------------------ registry API

    def register(self, node: str, address: str, app_name: str, last_update: int | None = None) -> dict:
        """Register ``address`` as an instance of ``app_name`` through ``node``."""
        reply = self.http.register(node, address, app_name, last_update)
        self.timeline.record("register", node=node, address=address, app_name=app_name, last_update=last_update)
        return reply

    def deregister(self, node: str, address: str) -> dict:
        """Deregister ``address`` through ``node``."""
        reply = self.http.deregister(node, address)
        self.timeline.record("deregister", node=node, address=address)
        return reply

    def perform_update(self, node: str) -> dict:
        """Make ``node`` run one gossip round now."""
        return self.http.perform_update(node)

    def _asked(self, nodes: Iterable[str] | None) -> list[str]:
        """The named nodes (checked), or every running node."""
        return [self.node(n).name for n in nodes] if nodes is not None else self._running()

    def views(self, nodes: Iterable[str] | None = None, path: str = "/registry/list") -> dict[str, dict]:
        """Return {node: listing} for the nodes that answer (default: all running)."""
        return self.http.views(self._asked(nodes), path)

    def digests(self, nodes: Iterable[str] | None = None) -> dict[str, tuple[str, int]]:
        """Return {node: (digest, entries)} for the nodes that answer."""
        return self.http.digests(self._asked(nodes))

    def metrics(self, nodes: Iterable[str] | None = None) -> dict[str, dict[str, float]]:
        """Return {node: {sample: value}} from each answering node's /metrics."""
        return self.http.metrics(self._asked(nodes))

    def observe(self, nodes: Iterable[str] | None = None, expect_present=(), expect_absent=(),
                explain: bool = False) -> Report:
        """Ask the nodes for digests (and listings when needed) and judge convergence once."""
        return readiness.observe(self._asked(nodes), self.http.digests, self.http.views,
                                 expect_present, expect_absent, explain)

    def wait_converged(self, timeout: float = 30.0, nodes: Iterable[str] | None = None,
                       expect_present: Iterable[str] = (), expect_absent: Iterable[str] = (),
                       interval: float = 0.25) -> Report:
        """Wait until the (reachable) nodes agree on one digest and the expectations hold.

        ``nodes`` defaults to every running node. Raises ConvergenceTimeout saying
        which node lacks or disagrees on which entries, with those nodes' log tails.
        """
        present, absent = list(expect_present), list(expect_absent)
        names = [self.node(n).name for n in nodes] if nodes is not None else None
        return readiness.wait_converged(lambda explain: self.observe(names, present, absent, explain), timeout,
                                        interval, lambda n: self.logs(n, tail=10), self.timeline, self.name)

    def settle(self, seconds: float) -> None:
        """Let ``seconds`` of wall time pass."""
        time.sleep(seconds)

    def status(self) -> dict:
        """Return {"nodes": [{name, url, state, entries, digest, status}], "converged": bool}."""
        states = self.states()
        digests = self.http.digests([n for n, s in states.items() if s == "running"])
        return readiness.status(self.name, states, digests, self.url, self._sigstopped)

    def _sigstopped(self, node: str) -> bool:
        """Whether the node process is stopped by a signal (False when that cannot be told)."""
        try:
            return self.faults.stopped(node)
        except HarnessError:
            return False

    # ------------------------------------------------------------------ process faults

    def kill(self, node: str) -> None:
        """SIGKILL the node's process (its connections reset); data in /data is kept."""
        self.procs.kill(node)

    def stop(self, node: str, timeout: int = 10) -> None:
        """Stop the node gracefully (SIGTERM, SIGKILL after ``timeout`` s)."""
        self.procs.stop(node, timeout)

    def start(self, node: str) -> None:
        """Start a stopped or killed node and wait for /health (its own fault rules are gone)."""
        self.procs.start(node)

    def restart(self, node: str, timeout: int = 10) -> None:
        """Restart the node and wait for /health (its own fault rules are gone)."""
        self.procs.restart(node, timeout)

    def pause(self, node: str) -> str:
        """Freeze the node's processes: peers see timeouts, sockets stay open.

        Uses the cgroup freezer where the runtime can, else SIGSTOP to the node process
        (peers observe the same); returns "freezer" or "sigstop". A SIGSTOPped node
        still counts as running, so faults can be applied to it.
        """
        return self.procs.pause(node)

    def unpause(self, node: str) -> None:
        """Thaw a node paused by either method."""
        self.procs.unpause(node)

    def skew(self, node: str, seconds: float) -> None:
        """Set ``node``'s clock offset to ``seconds`` at runtime (reset by a restart)."""
        got = self.http.set_clock(node, seconds)
        if abs(float(got.get("offset", float("nan"))) - float(seconds)) > 1e-6:
            raise FaultNotApplied(
                f"skew on {node}: asked for {seconds}, node reports offset {got.get('offset')}", json.dumps(got))
        self.timeline.record("skew", node=node, seconds=seconds, wall=got.get("wall"))

    # ------------------------------------------------------------------ network faults

    def _snapshot(self) -> Snapshot:
        return Snapshot(self.nodes, self._running(), {n: self.node(n).ip for n in self.nodes},
                        list(self.deployment.harness_sources))

    def partition(self, groups: Sequence[Iterable[str]]) -> list[list[str]]:
        """Cut the groups from one another (both ways, new and established connections).

        Nodes in no group form one extra group together. Replaces any earlier
        partition or one-way cut (loss and delay stay). Returns the full grouping.
        Rules go on the running nodes only; a paused node keeps whatever rules it had
        (heal after unpausing it), a stopped one has none when it starts again.
        """
        return self.net.partition(groups)

    def isolate(self, node: str) -> list[list[str]]:
        """Cut ``node`` from every other node (a partition with it alone on one side)."""
        return self.partition([[self.node(node).name]])

    def cut_links(self, links: Iterable[tuple[str, str]]) -> None:
        """Cut each directed link and its reverse (rings, bridges: shapes groups cannot say); replaces earlier cuts."""
        self.net.cut(links)

    def partition_one_way(self, src: str, dst: str) -> None:
        """Drop connections initiated by ``src`` towards ``dst`` (new and established); dst still reaches src.

        Adds to any existing partition; the probe checks src -> dst is cut and dst -> src
        is as open as it was before. Both ends must be running (the probe needs them).
        """
        self.net.one_way(src, dst)

    def heal(self) -> None:
        """Remove every cut, loss and delay on the running nodes and check all links are open."""
        self.net.heal()

    def loss(self, node: str, percent: float) -> None:
        """Drop ``percent`` % of the packets ``node`` receives (0 removes the loss); probed from a peer."""
        self.net.loss(self.node(node).name, percent)

    def delay(self, node: str, ms: float) -> None:
        """Delay every packet ``node`` sends by ``ms`` (tc netem); FaultNotSupported without sch_netem."""
        self.net.delay(self.node(node).name, ms)
