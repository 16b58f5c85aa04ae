"""A cluster of registry nodes in Docker containers, with faults checked for effect.

``Cluster`` is a facade over the Docker SDK (client passed in). It owns one bridge
network with a subnet of its own, one container and one named volume per node, all
labelled ``sd.harness=1``, ``sd.cluster=<name>``, ``sd.run=<uuid>``. Nodes are
named ``n1..nN`` everywhere; container ``sd-<cluster>-n<k>`` has hostname and
network alias ``n<k>``, a fixed IP (so peers' fault rules stay valid across
restarts) and its port 5000 published on a fixed free 127.0.0.1 port (so its URL
stays valid across restarts).

Faults run inside each container's own network namespace (``docker exec`` as root)
and are probed afterwards: TCP connects from inside the containers must fail across
a cut and succeed elsewhere, or ``FaultNotApplied`` is raised.

What survives what:

- ``stop``/``kill`` + ``start`` and ``restart`` give the container a fresh network
  namespace: its own iptables rules, loss and delay are gone, and its runtime
  clock skew resets to SD_CLOCK_OFFSET. Partition and one-way cuts are installed on
  both ends, so the peers' rules keep them in force. Data in /data survives.
- ``pause`` keeps everything; a paused node cannot be exec'd into, so rules are
  installed on the running nodes only (which is enough, see above).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import docker
import docker.errors
import requests

from . import convergence, hostlimits, topology
from .errors import (
    ClusterExists,
    ClusterNotFound,
    ConvergenceTimeout,
    DockerUnavailable,
    FaultNotApplied,
    FaultNotSupported,
    HarnessError,
    ImageNotFound,
    NodeNotFound,
    NodeStartError,
)
from .timeline import Timeline, default_path
from .wait import wait_until

log = logging.getLogger(__name__)

LABEL_HARNESS = "sd.harness"
LABEL_CLUSTER = "sd.cluster"
LABEL_RUN = "sd.run"
LABEL_NODE = "sd.node"

DEFAULT_IMAGE = "sd-node:latest"
NODE_PORT = topology.NODE_PORT
# Pool the cluster subnets (/24 each) are taken from; override with SD_HARNESS_POOL.
SUBNET_POOL = os.environ.get("SD_HARNESS_POOL", "10.213.0.0/16")
# Offset of node k's host number in its subnet: n1 = .11, n2 = .12, ...
HOST_OFFSET = 10
MAX_WORKERS = 8
LOG_TAIL = 40

_CLUSTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")
_PORT_IN_USE = ("port is already allocated", "address already in use")


@dataclass(frozen=True)
class Node:
    """One node of the cluster as the harness knows it."""

    name: str        # n1, n2, ...
    container: str   # Docker container name
    ip: str          # fixed IP on the cluster network
    host_port: int   # 127.0.0.1 port published for 5000/tcp

    @property
    def url(self) -> str:
        """Base URL of the node's HTTP API from the host."""
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def address(self) -> str:
        """host:port the node advertises to its peers."""
        return f"{self.name}:{NODE_PORT}"


def validate_name(name: str) -> str:
    """Return ``name`` if it is usable in Docker object names, else raise HarnessError."""
    if not isinstance(name, str) or not _CLUSTER_NAME.match(name):
        raise HarnessError(f"invalid cluster name {name!r}: use 1-40 of a-z 0-9 _ . - starting with a letter or digit")
    return name


def _docker_errors(fn):
    """Turn Docker SDK exceptions escaping ``fn`` into harness errors."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HarnessError:
            raise
        except docker.errors.APIError as exc:
            raise HarnessError(f"docker: {_explain(exc)}") from exc
        except (docker.errors.DockerException, requests.ConnectionError) as exc:
            raise DockerUnavailable(_unreachable(exc)) from exc

    return wrapper


def _explain(exc: Exception) -> str:
    """Return the daemon's message of a Docker error (no HTTP noise)."""
    return getattr(exc, "explanation", None) or str(exc)


def connect(client=None):
    """Return a Docker client that answers ping, or raise DockerUnavailable."""
    try:
        client = client or docker.from_env()
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise DockerUnavailable(_unreachable(exc)) from exc
    return client


def is_local(client) -> bool:
    """Whether the engine runs on this host (a unix socket), so this host's limits apply."""
    return str(getattr(client.api, "base_url", "")).startswith("http+docker://")


def running_cluster_sizes(client) -> list[int]:
    """Return the node count of every harness cluster that has containers on the engine."""
    containers = client.containers.list(all=True, filters={"label": LABEL_HARNESS})
    sizes = Counter(c.labels.get(LABEL_CLUSTER, "") for c in containers if _is_node(c.labels.get(LABEL_NODE)))
    return list(sizes.values())


def _unreachable(exc: Exception) -> str:
    """One line saying the daemon is unreachable, with the OS reason when there is one."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] [^\"')]+", text)
    reason = m.group(0) if m else text.splitlines()[0][:160] if text else type(exc).__name__
    where = os.environ.get("DOCKER_HOST", "the default socket")
    return f"cannot reach the Docker daemon at {where}: {reason}"


def _free_port() -> int:
    """Return a 127.0.0.1 TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _labels_filter(cluster: str | None = None) -> list[str]:
    labels = [f"{LABEL_HARNESS}=1"]
    if cluster is not None:
        labels.append(f"{LABEL_CLUSTER}={cluster}")
    return labels


class Cluster:
    """N registry nodes in Docker on a private network, plus faults and waits.

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
        timeline: str | os.PathLike | None | bool = None,
        start_timeout: float = 60.0,
        command: Sequence[str] | None = None,
    ):
        """Describe a cluster; nothing is created until ``up()``.

        ``timeline`` None writes to ``.harness/<name>/timeline.jsonl``, False disables
        it. ``command`` overrides the image's command (for stand-in images).
        """
        if int(nodes) < 1:
            raise HarnessError(f"a cluster needs at least one node, got {nodes}")
        self.name = validate_name(name)
        self.size = int(nodes)
        self.image = image
        self.client = client
        self.env = dict(env or {})
        self.interval, self.fanout, self.ttl = interval, fanout, ttl
        self.start_timeout = start_timeout
        self.command = list(command) if command else None
        self.run_id = uuid.uuid4().hex
        self.network_name = f"sd-{self.name}"
        self.subnet: ipaddress.IPv4Network | None = None
        self._nodes: dict[str, Node] = {}
        self._iptables: str | None = None
        if timeline is False:
            self.timeline = Timeline(None)
        else:
            self.timeline = Timeline(timeline if timeline is not None else default_path(self.name))

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Cluster:
        self.up()
        return self

    def __exit__(self, *exc_info) -> bool:
        self.down()
        return False

    @_docker_errors
    def up(self) -> Cluster:
        """Create network, volumes and containers, start them in parallel, wait for /health.

        On any failure (or Ctrl-C) everything created so far is removed before the
        error propagates.
        """
        self.client = connect(self.client)
        try:
            self.client.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise ImageNotFound(f"image {self.image} not found locally; build it with docker/build-image.sh") from None
        if self._find_containers(self.client, self.name):
            raise ClusterExists(f"cluster {self.name!r} already exists; run `down --name {self.name}` or `gc` first")
        if is_local(self.client):
            hostlimits.check_neighbour_table(self.size, running_cluster_sizes(self.client))
        try:
            self._create_network()
            names = [f"n{k}" for k in range(1, self.size + 1)]
            seeds = names[:2]
            with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
                list(pool.map(lambda n: self._launch(n, [s for s in seeds if s != n]), names))
            self._wait_healthy(names)
        except BaseException:
            self.down()
            raise
        self.timeline.record("up", cluster=self.name, run=self.run_id, nodes=names, subnet=str(self.subnet),
                             image=self.image, interval=self.interval, fanout=self.fanout, ttl=self.ttl)
        return self

    @classmethod
    @_docker_errors
    def attach(cls, name: str = "default", client=None, timeline=None) -> Cluster:
        """Return a Cluster for containers already running under ``name`` (made by another process)."""
        validate_name(name)
        client = connect(client)
        containers = cls._find_containers(client, name)
        if not containers:
            raise ClusterNotFound(f"no cluster named {name!r} (start one with `up --name {name}`)")
        first = containers[0]
        self = cls.__new__(cls)
        self.name, self.client = name, client
        self.image = (first.attrs.get("Config") or {}).get("Image", DEFAULT_IMAGE)
        self.env, self.command, self.start_timeout = {}, None, 60.0
        self.run_id = first.labels.get(LABEL_RUN, "")
        self.network_name = f"sd-{name}"
        env = dict(e.split("=", 1) for e in (first.attrs.get("Config") or {}).get("Env") or [] if "=" in e)
        self.interval = float(env["SD_INTERVAL"]) if "SD_INTERVAL" in env else None
        self.fanout = int(env["SD_FANOUT"]) if "SD_FANOUT" in env else None
        self.ttl = float(env["SD_TTL"]) if "SD_TTL" in env else None
        self._iptables = None
        self._nodes = {}
        for c in containers:
            node = self._node_from_container(c)
            self._nodes[node.name] = node
        self.size = len(self._nodes)
        try:
            net = client.networks.get(self.network_name)
            self.subnet = ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"])
        except (docker.errors.NotFound, KeyError, IndexError):
            self.subnet = None
        if timeline is False:
            self.timeline = Timeline(None)
        else:
            self.timeline = Timeline(timeline if timeline is not None else default_path(name))
        return self

    @_docker_errors
    def down(self) -> dict:
        """Remove this cluster's containers, volumes and network; return what was removed."""
        if self.client is None:
            return {"containers": 0, "volumes": 0, "networks": 0}
        removed = gc(self.client, cluster=self.name)
        self._nodes = {}
        self.timeline.record("down", cluster=self.name, run=self.run_id, **removed)
        return removed

    @_docker_errors
    def add_node(self) -> str:
        """Start one more node that knows only n1 as its seed; return its name once healthy."""
        k = max((topology.node_index(n) for n in self._nodes), default=0) + 1
        name = f"n{k}"
        self._launch(name, ["n1"] if name != "n1" else [])
        try:
            self._wait_healthy([name])
        finally:
            self.size = len(self._nodes)
        self.timeline.record("add_node", node=name, seeds=["n1"])
        return name

    # ------------------------------------------------------------------ nodes

    @property
    def nodes(self) -> list[str]:
        """Names of the cluster's nodes, n1 first."""
        return topology.sort_nodes(self._nodes)

    def node(self, name: str) -> Node:
        """Return the Node called ``name`` or raise NodeNotFound."""
        try:
            return self._nodes[name]
        except (KeyError, TypeError):
            raise NodeNotFound(f"no node {name!r} in cluster {self.name!r} (nodes: {', '.join(self.nodes)})") from None

    def url(self, node: str) -> str:
        """Base URL (from the host) of node ``node``."""
        return self.node(node).url

    @_docker_errors
    def state(self, node: str) -> str:
        """Docker state of the node's container: running, paused, exited, ..."""
        return self._container(node).status

    @_docker_errors
    def states(self) -> dict[str, str]:
        """Docker state of every node's container."""
        found = {c.labels.get(LABEL_NODE): c.status for c in self._find_containers(self.client, self.name)}
        return {n: found.get(n, "missing") for n in self.nodes}

    @_docker_errors
    def logs(self, node: str, tail: int = LOG_TAIL) -> str:
        """Return the last ``tail`` lines of the node's container log."""
        try:
            return self._container(node).logs(tail=tail).decode("utf-8", "replace")
        except docker.errors.NotFound:
            return "(container gone)"

    # ------------------------------------------------------------------ registry API

    def register(self, node: str, address: str, app_name: str, last_update: int | None = None) -> dict:
        """Register ``address`` as an instance of ``app_name`` through ``node``."""
        body = {"address": address, "app_name": app_name}
        if last_update is not None:
            body["last_update"] = last_update
        reply = self._request("POST", node, "/registry/register_instance", json=body)
        self.timeline.record("register", node=node, address=address, app_name=app_name, last_update=last_update)
        return reply

    def deregister(self, node: str, address: str) -> dict:
        """Deregister ``address`` through ``node``."""
        reply = self._request("POST", node, "/registry/deregister_instance", json={"address": address})
        self.timeline.record("deregister", node=node, address=address)
        return reply

    def perform_update(self, node: str) -> dict:
        """Make ``node`` run one gossip round now."""
        return self._request("GET", node, "/registry/perform_update")

    def views(self, nodes: Iterable[str] | None = None, path: str = "/registry/list") -> dict[str, dict]:
        """Return {node: listing} for the nodes that answer (unreachable ones are omitted)."""
        return {n: v for n, v in self._gather(nodes, path).items() if v is not None}

    def digests(self, nodes: Iterable[str] | None = None) -> dict[str, tuple[str, int]]:
        """Return {node: (digest, entries)} for the nodes that answer."""
        raw = self._gather(nodes, "/registry/digest")
        return {n: (r["digest"], int(r["entries"])) for n, r in raw.items() if r is not None}

    def observe(self, nodes: Iterable[str] | None = None, expect_present=(), expect_absent=(),
                explain: bool = False) -> convergence.Report:
        """Ask the nodes for digests (and listings when needed) and judge convergence once.

        ``explain`` also fetches listings and full entries so the report says who
        lacks what.
        """
        names = self._reachable_candidates(nodes)
        digests = self.digests(names)
        views = self.views(names) if explain or expect_present or expect_absent else {}
        detail = self.views(names, path="/registry/entries") if explain else None
        unreachable = [n for n in names if n not in digests]
        return convergence.check(digests, views, unreachable, expect_present, expect_absent, detail=detail)

    def wait_converged(self, timeout: float = 30.0, nodes: Iterable[str] | None = None,
                       expect_present: Iterable[str] = (), expect_absent: Iterable[str] = (),
                       interval: float = 0.25) -> convergence.Report:
        """Wait until the (reachable) nodes agree on one digest and the expectations hold.

        ``nodes`` defaults to every running node. Raises ConvergenceTimeout saying
        which node lacks or disagrees on which entries, with those nodes' log tails.
        """
        present, absent = list(expect_present), list(expect_absent)
        names = list(nodes) if nodes is not None else None
        for n in names or ():
            self.node(n)
        outcome = wait_until(
            lambda: self.observe(names, present, absent),
            passed=lambda r: r.converged,
            timeout=timeout,
            interval=interval,
        )
        if outcome.ok:
            report = outcome.last
            digest = next(iter(report.digests.values()))
            self.timeline.record("converged", elapsed=round(outcome.elapsed, 3), attempts=outcome.attempts,
                                 nodes=topology.sort_nodes(report.digests), digest=digest[0], entries=digest[1],
                                 unreachable=report.unreachable)
            return report
        report = self.observe(names, present, absent, explain=True)
        if report.converged:  # agreed right after the deadline: still a timeout, say so
            report = outcome.last or report
        logs = {n: self.logs(n, tail=10) for n in (report.lagging() or report.unreachable)[:4]}
        self.timeline.record("convergence_timeout", timeout=timeout, attempts=outcome.attempts,
                             explanation=report.explain())
        raise ConvergenceTimeout(f"cluster {self.name!r} did not converge within {timeout:g}s", report, logs)

    def status(self) -> dict:
        """Return {"nodes": [{name, url, state, entries, digest, status}], "converged": bool}."""
        states = self.states()
        up = [n for n, s in states.items() if s == "running"]
        digests = self.digests(up)
        rows = []
        for n in self.nodes:
            d = digests.get(n)
            status = states[n] if states[n] != "running" else ("ok" if d else "unreachable")
            if status == "unreachable" and self._sigstopped(n):
                status = "paused"
            rows.append({"name": n, "url": self.url(n), "state": states[n],
                         "entries": d[1] if d else None, "digest": d[0] if d else None, "status": status})
        converged = bool(digests) and len({d for d, _ in digests.values()}) == 1 and len(digests) == len(up)
        return {"cluster": self.name, "nodes": rows, "converged": converged}

    # ------------------------------------------------------------------ process faults

    @_docker_errors
    def kill(self, node: str) -> None:
        """SIGKILL the node's process (its connections reset); data in /data is kept."""
        self._container(node).kill()
        self._expect_state(node, {"exited", "dead"}, "kill")
        self.timeline.record("kill", node=node)

    @_docker_errors
    def stop(self, node: str, timeout: int = 10) -> None:
        """Stop the node gracefully (SIGTERM, SIGKILL after ``timeout`` s)."""
        self._container(node).stop(timeout=timeout)
        self._expect_state(node, {"exited"}, "stop")
        self.timeline.record("stop", node=node)

    @_docker_errors
    def start(self, node: str) -> None:
        """Start a stopped or killed node and wait for /health (its own fault rules are gone)."""
        self._container(node).start()
        self._wait_healthy([node])
        self.timeline.record("start", node=node, local_faults_reset=True)

    @_docker_errors
    def restart(self, node: str, timeout: int = 10) -> None:
        """Restart the node and wait for /health (its own fault rules are gone)."""
        self._container(node).restart(timeout=timeout)
        self._wait_healthy([node])
        self.timeline.record("restart", node=node, local_faults_reset=True)

    @_docker_errors
    def pause(self, node: str) -> str:
        """Freeze the node's processes: peers see timeouts, sockets stay open.

        Uses ``docker pause`` (cgroup freezer); where the runtime cannot freeze
        (seen here: "unable to freeze"), sends SIGSTOP to the node process (PID 1)
        instead, which peers observe the same way. Returns the method used:
        "freezer" or "sigstop". A SIGSTOPped node still counts as running for Docker,
        so faults can be applied to it.
        """
        container = self._container(node)
        try:
            container.pause()
            method = "freezer"
            self._expect_state(node, {"paused"}, "pause")
        except docker.errors.APIError as exc:
            if "freeze" not in str(exc).lower():
                raise
            container.kill(signal="SIGSTOP")
            method = "sigstop"
            if not self._sigstopped(node):
                raise FaultNotApplied(f"pause {node}: SIGSTOP sent but the node process is not stopped") from None
        self.timeline.record("pause", node=node, method=method)
        return method

    @_docker_errors
    def unpause(self, node: str) -> None:
        """Thaw a node paused by either method."""
        container = self._container(node)
        if container.status == "paused":
            container.unpause()
            self._expect_state(node, {"running"}, "unpause")
        else:
            container.kill(signal="SIGCONT")
            if self._sigstopped(node):
                raise FaultNotApplied(f"unpause {node}: SIGCONT sent but the node process is still stopped")
        self.timeline.record("unpause", node=node)

    def _sigstopped(self, node: str) -> bool:
        """Tell whether the node process (PID 1) is stopped by a signal."""
        rc, out = self._exec(node, ["sh", "-c", "grep '^State:' /proc/1/status"])
        return rc == 0 and "(stopped)" in out

    # ------------------------------------------------------------------ network faults

    @_docker_errors
    def partition(self, groups: Sequence[Iterable[str]]) -> list[list[str]]:
        """Cut the groups from one another (both ways, new and established connections).

        Nodes in no group form one extra group together. Replaces any earlier
        partition or one-way cut (loss and delay stay). Returns the full grouping.
        Rules go on the running nodes only; a paused node keeps whatever rules it had
        (heal after unpausing it), a stopped one has none when it starts again.
        """
        full = topology.validate_groups(groups, self.nodes)
        ips = self._ips()
        running = self._running()
        self._on_nodes(running, lambda n: self._iptables_run(
            n, topology.flush_script(self._ipt(n), [topology.CHAIN_IN, topology.CHAIN_OUT]) + "\n"
            + topology.rules_script(self._ipt(n), topology.partition_rules(n, full, ips)), "partition"))
        cuts = topology.partition_cuts(full)
        expected = {(a, b): (a, b) not in cuts for a in running for b in running if a != b}
        self._verify(expected, "partition")
        skipped = [n for n in self.nodes if n not in running]
        self.timeline.record("partition", groups=full, rules_on=running, rules_skipped=skipped)
        return full

    def isolate(self, node: str) -> list[list[str]]:
        """Cut ``node`` from every other node (a partition with it alone on one side)."""
        self.node(node)
        return self.partition([[node]])

    @_docker_errors
    def partition_one_way(self, src: str, dst: str) -> None:
        """Drop connections initiated by ``src`` towards ``dst`` (new and established); dst still reaches src.

        Adds to any existing partition; the probe checks src -> dst is cut and dst -> src
        is as open as it was before. Both ends must be running (the probe needs them).
        """
        self.node(src), self.node(dst)
        if src == dst:
            raise HarnessError("partition_one_way needs two different nodes")
        running = self._running()
        for n in (src, dst):
            if n not in running:
                raise HarnessError(f"{n} is {self.state(n)}; a one-way cut needs both ends running to be verified")
        ips = self._ips()
        # dst -> src must stay as it was (an earlier partition may already cut it)
        back = self._probe(dst, [src], ips)[(dst, src)]
        self._on_nodes([src, dst], lambda n: self._iptables_run(
            n, topology.rules_script(self._ipt(n), topology.one_way_rules(n, src, dst, ips)), "partition_one_way"))
        self._verify({(src, dst): False, (dst, src): back}, "partition_one_way")
        self.timeline.record("partition_one_way", src=src, dst=dst)

    @_docker_errors
    def heal(self) -> None:
        """Remove every cut, loss and delay on the running nodes and check all links are open."""
        running = self._running()

        def clear(n):
            self._iptables_run(n, topology.flush_script(self._ipt(n), topology.CHAINS), "heal")
            self._exec(n, ["sh", "-c", "tc qdisc del dev eth0 root 2>/dev/null || true"])

        self._on_nodes(running, clear)
        self._verify({(a, b): True for a in running for b in running if a != b}, "heal")
        self.timeline.record("heal", nodes=running)

    @_docker_errors
    def loss(self, node: str, percent: float) -> None:
        """Drop ``percent`` % of the packets ``node`` receives (0 removes the loss); probed from a peer."""
        self.node(node)
        percent = float(percent)
        if not 0 <= percent <= 100:
            raise HarnessError(f"loss percent must be within 0..100, got {percent:g}")
        self._require_running(node, "loss")
        ipt = self._ipt(node)
        script = topology.flush_script(ipt, [topology.CHAIN_LOSS])
        if percent > 0:
            gateway = [str(self.subnet.network_address + 1)] if self.subnet is not None else []
            script += "\n" + topology.rules_script(ipt, topology.loss_rules(percent, spare=gateway))
        self._iptables_run(node, script, "loss")
        probe = "none"
        if percent > 0:
            probe = self._probe_loss(node, percent)
        self.timeline.record("loss", node=node, percent=percent, probe=probe)

    @_docker_errors
    def delay(self, node: str, ms: float) -> None:
        """Delay every packet ``node`` sends by ``ms`` (tc netem); FaultNotSupported without sch_netem."""
        self.node(node)
        self._require_running(node, "delay")
        if ms <= 0:
            self._exec(node, ["sh", "-c", "tc qdisc del dev eth0 root 2>/dev/null || true"])
            self.timeline.record("delay", node=node, ms=0)
            return
        rc, out = self._exec(node, ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", f"{ms:g}ms"])
        if rc != 0:
            if "unknown" in out.lower() or "not supported" in out.lower() or "no such file" in out.lower() or rc == 127:
                raise FaultNotSupported(
                    f"delay needs tc netem, which this kernel lacks (sch_netem): {out.strip()}; "
                    "use loss() (iptables statistic) instead", out)
            raise FaultNotApplied(f"tc netem on {node} failed: {out.strip()}", out)
        peer = self._probe_peer(node)
        if peer is not None:
            took = self._connect_time(peer, self.node(node).ip)
            if took is None or took < 0.8 * ms / 1000:
                raise FaultNotApplied(f"delay {ms:g}ms on {node}: a connect from {peer} took {took}s", "")
        self.timeline.record("delay", node=node, ms=ms)

    def skew(self, node: str, seconds: float) -> None:
        """Set ``node``'s clock offset to ``seconds`` at runtime (reset by a restart)."""
        self._request("POST", node, "/admin/clock", json={"offset": seconds})
        got = self._request("GET", node, "/admin/clock")
        if abs(float(got.get("offset", float("nan"))) - float(seconds)) > 1e-6:
            raise FaultNotApplied(
                f"skew on {node}: asked for {seconds}, node reports offset {got.get('offset')}", json.dumps(got))
        self.timeline.record("skew", node=node, seconds=seconds, wall=got.get("wall"))

    # ------------------------------------------------------------------ internals: docker

    @staticmethod
    def _find_containers(client, cluster: str) -> list:
        found = client.containers.list(all=True, filters={"label": _labels_filter(cluster)})
        return sorted((c for c in found if _is_node(c.labels.get(LABEL_NODE))),
                      key=lambda c: topology.node_index(c.labels[LABEL_NODE]))

    @staticmethod
    def _node_from_container(c) -> Node:
        name = c.labels[LABEL_NODE]
        nets = (c.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        ip = ""
        for net in nets.values():
            ip = ((net.get("IPAMConfig") or {}).get("IPv4Address")) or net.get("IPAddress") or ip
        bindings = ((c.attrs.get("HostConfig") or {}).get("PortBindings") or {}).get(f"{NODE_PORT}/tcp") or [{}]
        port = int(bindings[0].get("HostPort") or 0)
        return Node(name=name, container=c.name, ip=ip, host_port=port)

    def _labels(self, node: str | None = None) -> dict[str, str]:
        labels = {LABEL_HARNESS: "1", LABEL_CLUSTER: self.name, LABEL_RUN: self.run_id}
        if node is not None:
            labels[LABEL_NODE] = node
        return labels

    def _create_network(self) -> None:
        """Create the cluster's bridge network on the first free /24 of the pool."""
        taken = []
        for net in self.client.networks.list():
            for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
                try:
                    taken.append(ipaddress.ip_network(cfg["Subnet"], strict=False))
                except (KeyError, ValueError):
                    pass
        last_error = None
        for subnet in ipaddress.ip_network(SUBNET_POOL).subnets(new_prefix=24):
            if any(subnet.overlaps(t) for t in taken if t.version == 4):
                continue
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                subnet=str(subnet), gateway=str(subnet.network_address + 1))])
            try:
                self.client.networks.create(self.network_name, driver="bridge", ipam=ipam,
                                            labels=self._labels(), check_duplicate=True)
            except docker.errors.APIError as exc:
                if "overlap" in str(exc).lower():  # another cluster took it meanwhile
                    last_error = exc
                    continue
                raise
            self.subnet = subnet
            return
        raise HarnessError(f"no free /24 left in {SUBNET_POOL} for the cluster network ({last_error})")

    def _launch(self, name: str, seeds: Sequence[str]) -> Node:
        """Create the node's volume and container and start it (retrying a host-port clash)."""
        k = topology.node_index(name)
        ip = str(self.subnet.network_address + HOST_OFFSET + k)
        volume = f"sd-{self.name}-{name}-data"
        self.client.volumes.create(volume, labels=self._labels(name))
        env = {
            "SD_PORT": str(NODE_PORT),
            "SD_ADVERTISE": f"{name}:{NODE_PORT}",
            "SD_SEEDS": ",".join(f"{s}:{NODE_PORT}" for s in seeds),
            "SD_DB": "/data/registry.db",
            "SD_PRESET": "local",
            "SD_NAME": name,
        }
        for key, value in (("SD_INTERVAL", self.interval), ("SD_FANOUT", self.fanout), ("SD_TTL", self.ttl)):
            if value is not None:
                env[key] = str(value)
        env.update(self.env)
        container_name = f"sd-{self.name}-{name}"
        for attempt in range(3):
            port = _free_port()
            container = self.client.containers.create(
                self.image,
                command=self.command,
                name=container_name,
                hostname=name,
                environment=env,
                labels=self._labels(name),
                cap_add=["NET_ADMIN"],
                ports={f"{NODE_PORT}/tcp": ("127.0.0.1", port)},
                volumes={volume: {"bind": "/data", "mode": "rw"}},
                network=self.network_name,
                networking_config={self.network_name: self.client.api.create_endpoint_config(
                    ipv4_address=ip, aliases=[name])},
                detach=True,
            )
            try:
                container.start()
            except docker.errors.APIError as exc:
                container.remove(force=True)
                if attempt < 2 and any(s in str(exc).lower() for s in _PORT_IN_USE):
                    continue
                raise
            break
        node = Node(name=name, container=container_name, ip=ip, host_port=port)
        self._nodes[name] = node
        self.timeline.record("node_started", node=name, ip=ip, url=node.url, seeds=list(seeds))
        return node

    def _wait_healthy(self, names: Sequence[str]) -> None:
        """Wait until every node answers /health; a dead container fails fast with its logs."""

        def one(name):
            url = self.url(name) + "/health"

            def check():
                try:
                    if requests.get(url, timeout=1).status_code == 200:
                        return "ok"
                except requests.RequestException:
                    pass
                status = self._container(name).status
                return "running" if status == "running" else status

            return wait_until(check, passed=lambda s: s not in ("running", "created", "restarting"),
                              timeout=self.start_timeout, interval=0.2)

        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            outcomes = dict(zip(names, pool.map(one, names), strict=True))
        bad = {n: o for n, o in outcomes.items() if not (o.ok and o.last == "ok")}
        if bad:
            detail = ", ".join(f"{n} ({o.last if o.ok else f'no /health answer in {self.start_timeout:g}s'})"
                               for n, o in bad.items())
            raise NodeStartError(f"cluster {self.name!r}: nodes not healthy: {detail}",
                                 {n: self.logs(n) for n in bad})

    def _container(self, node: str):
        try:
            return self.client.containers.get(self.node(node).container)
        except docker.errors.NotFound:
            raise NodeNotFound(f"container of {node} ({self.node(node).container}) is gone") from None

    def _expect_state(self, node: str, states: set[str], action: str) -> None:
        got = self.state(node)
        if got not in states:
            raise FaultNotApplied(f"{action} {node}: container is {got}, expected {' or '.join(sorted(states))}")

    def _running(self) -> list[str]:
        return [n for n, s in self.states().items() if s == "running"]

    def _require_running(self, node: str, action: str) -> None:
        state = self.state(node)
        if state != "running":
            raise HarnessError(f"cannot apply {action} to {node}: it is {state}")

    def _ips(self) -> dict[str, str]:
        """Resolve every node's IP from Docker now (the harness pins them, but trust the daemon)."""
        ips = {}
        for c in self._find_containers(self.client, self.name):
            node = self._node_from_container(c)
            ips[node.name] = node.ip or self._nodes[node.name].ip
        for n in self.nodes:
            ips.setdefault(n, self._nodes[n].ip)
        return ips

    def _exec(self, node: str, cmd) -> tuple[int, str]:
        """Run ``cmd`` as root inside the node's container; return (exit code, output)."""
        result = self._container(node).exec_run(cmd, user="root")
        return result.exit_code, (result.output or b"").decode("utf-8", "replace")

    def _on_nodes(self, nodes: Sequence[str], fn) -> None:
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            list(pool.map(fn, nodes))

    def _ipt(self, node: str) -> str:
        """Return the iptables command that works in this image (nft first, then legacy)."""
        if self._iptables is None:
            for candidate in ("iptables", "iptables-legacy"):
                rc, _ = self._exec(node, ["sh", "-c", f"{candidate} -w -S INPUT >/dev/null 2>&1"])
                if rc == 0:
                    self._iptables = candidate
                    break
            else:
                raise FaultNotSupported(f"no working iptables in {self.image} (needs iptables and cap NET_ADMIN)")
        return self._iptables

    def _iptables_run(self, node: str, script: str, action: str) -> None:
        """Ensure the harness chains exist on ``node``, then run ``script`` there."""
        rc, out = self._exec(node, ["sh", "-c", topology.setup_script(self._ipt(node)) + "\n" + script])
        if rc != 0:
            low = out.lower()
            if "couldn't load match" in low or "no chain/target/match" in low or "extension" in low:
                raise FaultNotSupported(f"{action} on {node}: the kernel lacks an iptables feature: {out.strip()}", out)
            raise FaultNotApplied(f"{action} on {node}: iptables failed (rc {rc}): {out.strip()}", out)

    # ------------------------------------------------------------------ internals: probes

    def _probe(self, src: str, dsts: Sequence[str], ips: Mapping[str, str], timeout: float = 1.0) -> dict:
        script = topology.connect_probe_script([ips[d] for d in dsts], timeout=timeout)
        rc, out = self._exec(src, ["python3", "-c", script])
        if rc != 0:
            raise FaultNotApplied(f"probe from {src} failed to run (rc {rc}): {out.strip()}", out)
        by_ip = json.loads(out.strip().splitlines()[-1])
        return {(src, d): bool(by_ip.get(ips[d])) for d in dsts}

    def _verify(self, expected: Mapping[tuple[str, str], bool], action: str, rounds: int = 3) -> None:
        """Probe every link of ``expected``; re-probe links seen cut that should be open.

        Links expected cut are probed once (a DROP rule never lets one through);
        links expected open get up to ``rounds`` tries against transient loss.
        """
        ips = self._ips()
        pending = dict(expected)
        observed: dict[tuple[str, str], bool] = {}
        for _ in range(rounds):
            by_src: dict[str, list[str]] = {}
            for src, dst in pending:
                by_src.setdefault(src, []).append(dst)
            with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
                for result in pool.map(self._probe, list(by_src), list(by_src.values()), [ips] * len(by_src)):
                    observed.update(result)
            pending = {link: want for link, want in pending.items() if want and not observed[link]}
            if not pending:
                break
        wrong = topology.reachability_mismatches(expected, observed)
        if wrong:
            self.timeline.record("fault_not_applied", action=action, mismatches=wrong)
            raise FaultNotApplied(f"{action} did not take effect: " + "; ".join(wrong), "\n".join(wrong))

    def _probe_peer(self, node: str) -> str | None:
        return next((n for n in self._running() if n != node), None)

    def _probe_loss(self, node: str, percent: float) -> str:
        ipt = self._ipt(node)
        rc, out = self._exec(node, ["sh", "-c", f"{ipt} -w -S {topology.CHAIN_LOSS}"])
        if rc != 0 or "statistic" not in out:
            raise FaultNotApplied(f"loss on {node}: rule not found in {topology.CHAIN_LOSS}", out)
        attempts = topology.loss_probe_attempts(percent)
        peer = self._probe_peer(node)
        if attempts is None or peer is None:
            return "rule present (too little loss or no peer for a statistical probe)"
        script = topology.repeated_connect_script(self.node(node).ip, attempts)
        rc, out = self._exec(peer, ["python3", "-c", script])
        if rc != 0:
            raise FaultNotApplied(f"loss probe from {peer} failed to run: {out.strip()}", out)
        seen = json.loads(out.strip().splitlines()[-1])
        if seen["failures"] == 0:
            raise FaultNotApplied(
                f"loss {percent:g}% on {node}: {seen['attempts']} connects from {peer} all succeeded", out)
        return f"{peer} saw a drop after {seen['attempts']} connects"

    def _connect_time(self, src: str, ip: str) -> float | None:
        script = ("import socket, time\ns = socket.socket(); s.settimeout(10)\nt = time.monotonic()\n"
                  f"ok = s.connect_ex(({ip!r}, {NODE_PORT})) == 0\nprint(time.monotonic() - t if ok else -1)\n")
        rc, out = self._exec(src, ["python3", "-c", script])
        try:
            took = float(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None
        return took if rc == 0 and took >= 0 else None

    # ------------------------------------------------------------------ internals: HTTP

    def _request(self, method: str, node: str, path: str, json=None, timeout: float = 3.0):
        """Call the node's API; a transport failure or 5xx raises HarnessError, 4xx its message."""
        url = self.url(node) + path
        try:
            r = requests.request(method, url, json=json, timeout=timeout)
        except requests.RequestException as exc:
            raise HarnessError(f"{node} did not answer {method} {path}: {type(exc).__name__}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"raw": r.text[:200]}
        if r.status_code >= 400:
            msg = body.get("message") or body.get("error") if isinstance(body, dict) else None
            raise HarnessError(f"{node} refused {method} {path}: HTTP {r.status_code}: {msg or r.text[:200]}")
        return body

    def _reachable_candidates(self, nodes: Iterable[str] | None) -> list[str]:
        if nodes is not None:
            return [self.node(n).name for n in nodes]
        return self._running()

    def _gather(self, nodes: Iterable[str] | None, path: str) -> dict[str, object]:
        """GET ``path`` on the nodes in parallel; None for a node that does not answer."""
        names = self._reachable_candidates(nodes)

        def get(n):
            try:
                r = requests.get(self.url(n) + path, timeout=1.5)
                return r.json() if r.status_code == 200 else None
            except (requests.RequestException, ValueError):
                return None

        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            return dict(zip(names, pool.map(get, names), strict=True))


def _is_node(label: str | None) -> bool:
    try:
        topology.node_index(label)
        return True
    except NodeNotFound:
        return False


@_docker_errors
def gc(client=None, cluster: str | None = None) -> dict:
    """Remove containers, volumes and networks labelled ``sd.harness=1`` (of one cluster or all)."""
    client = connect(client)
    filters = {"label": _labels_filter(cluster)}
    containers = client.containers.list(all=True, filters=filters)

    def remove(c):
        try:
            c.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass

    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        list(pool.map(remove, containers))
    volumes = client.volumes.list(filters=filters)
    for v in volumes:
        try:
            v.remove(force=True)
        except docker.errors.NotFound:
            pass
    networks = client.networks.list(filters=filters)
    for net in networks:
        for attempt in range(10):  # endpoints of just-removed containers linger briefly
            try:
                net.remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                if attempt == 9:
                    raise
                time.sleep(0.3)
    return {"containers": len(containers), "volumes": len(volumes), "networks": len(networks)}
