"""Where cluster nodes run: the ``Backend`` seam and the registry of implementations.

``Cluster`` speaks to nodes' containers only through a ``Backend``: launch, state,
exec in a node's network namespace, process faults, logs, URL, removal. Two implement
it: the Docker engine (``engine.EngineBackend``: one container per node) and Docker Swarm
(``swarm.SwarmBackend``: one service per node, on one host or many). Another is one
more module and one more line in ``BACKENDS``.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from node.keyring import generate_key

from ..errors import HarnessError
from ..topology import NODE_PORT, node_address

# backend name -> "module:class", imported only when the backend is chosen
BACKENDS = {"docker": "harness.backends.engine:EngineBackend", "swarm": "harness.backends.swarm:SwarmBackend"}
DEFAULT_IMAGE = "sd-node:latest"


@dataclass(frozen=True)
class Node:
    """One node of the cluster as the harness knows it."""

    name: str        # n1, n2, ...
    container: str   # the backend's handle of the node (Docker: container name)
    ip: str          # fixed IP on the cluster network
    host_port: int   # 127.0.0.1 port published for the node's API port

    @property
    def url(self) -> str:
        """Base URL of the node's HTTP API from the host."""
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def address(self) -> str:
        """host:port the node advertises to its peers."""
        return node_address(self.name)


@dataclass(frozen=True)
class Spec:
    """What a cluster should be: everything a backend needs to launch its nodes."""

    name: str                                   # cluster name, usable in Docker object names
    image: str = DEFAULT_IMAGE                  # node image
    interval: float | None = None               # SD_INTERVAL (None: the image's preset)
    fanout: int | None = None                   # SD_FANOUT
    ttl: float | None = None                    # SD_TTL
    env: Mapping[str, str] = field(default_factory=dict)  # more environment, wins over the above
    command: Sequence[str] | None = None        # overrides the image's command (stand-in images)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # labels everything this run makes
    # SD_GOSSIP_KEYS: a fresh key per cluster ("" = open gossip); a secret, never shown
    gossip_keys: str = field(default_factory=generate_key, repr=False)

    def node_env(self, node: str, seeds: Sequence[str]) -> dict[str, str]:
        """The environment of node ``node`` that joins through ``seeds``.

        Nodes sign their gossip with the cluster's key and id, and serve /admin/clock
        (the harness skews clocks through it).
        """
        env = {
            "SD_PORT": str(NODE_PORT),
            "SD_ADVERTISE": node_address(node),
            "SD_SEEDS": ",".join(node_address(s) for s in seeds),
            "SD_DB": "/data/registry.db",
            "SD_PRESET": "local",
            "SD_NAME": node,
            "SD_CLUSTER": self.name,
            "SD_ENABLE_ADMIN": "1",
        }
        if self.gossip_keys:
            env["SD_GOSSIP_KEYS"] = self.gossip_keys
        for key, value in (("SD_INTERVAL", self.interval), ("SD_FANOUT", self.fanout), ("SD_TTL", self.ttl)):
            if value is not None:
                env[key] = str(value)
        env.update(self.env)
        return env


@dataclass
class Deployment:
    """What a backend made or found for one cluster."""

    spec: Spec
    nodes: dict[str, Node]
    # addresses the harness reaches nodes from (spared by packet loss), e.g. the bridge gateway
    harness_sources: list[str] = field(default_factory=list)
    # the cluster network's IPv4 subnet (None when the backend cannot tell)
    subnet: str | None = None


@runtime_checkable
class Backend(Protocol):
    """Runs the nodes of clusters; every method raises harness errors only."""

    def prepare(self, spec: Spec, size: int) -> None:
        """Check a ``size``-node cluster can start (image present, name free, host limits)."""
        ...

    def create(self, spec: Spec) -> Deployment:
        """Make the cluster's shared resources (network); no nodes yet."""
        ...

    def launch(self, spec: Spec, deployment: Deployment, node: str, seeds: Sequence[str]) -> Node:
        """Create and start node ``node`` joining through ``seeds``; it is added to ``deployment``."""
        ...

    def find(self, cluster: str) -> Deployment:
        """Return the running cluster called ``cluster``; raise ClusterNotFound."""
        ...

    def states(self, cluster: str) -> dict[str, str]:
        """State of each node found: running, paused, exited, ..."""
        ...

    def state(self, node: Node) -> str:
        """State of one node; NodeNotFound when it is gone."""
        ...

    def exec(self, node: Node, argv: Sequence[str]) -> tuple[int, str]:
        """Run ``argv`` as root in the node's network namespace; (exit code, output)."""
        ...

    def kill(self, node: Node, signal: str = "SIGKILL") -> None:
        """Send ``signal`` to the node's process."""
        ...

    def stop(self, node: Node, timeout: int = 10) -> None:
        """Stop the node gracefully (SIGKILL after ``timeout`` s)."""
        ...

    def start(self, node: Node) -> None:
        """Start a stopped node on its old data."""
        ...

    def restart(self, node: Node, timeout: int = 10) -> None:
        """Stop and start the node."""
        ...

    def pause(self, node: Node) -> str:
        """Freeze the node; return the method used ("freezer" or "sigstop")."""
        ...

    def unpause(self, node: Node) -> None:
        """Thaw a node frozen by either method."""
        ...

    def logs(self, node: Node, tail: int) -> str:
        """The last ``tail`` lines of the node's log."""
        ...

    def url(self, node: Node) -> str:
        """Base URL of the node's HTTP API from the host."""
        ...

    def remove(self, cluster: str) -> dict[str, int]:
        """Remove everything of ``cluster``; counts of what went."""
        ...

    def gc(self, cluster: str | None = None) -> dict[str, int]:
        """Remove what harness runs left (of one cluster, or all); counts of what went."""
        ...


def get(backend: str | Backend = "docker", client=None, **options) -> Backend:
    """Return the backend named ``backend`` (bound to ``client``, with ``options``), or ``backend`` itself."""
    if not isinstance(backend, str):
        return backend
    try:
        module, _, cls = BACKENDS[backend].partition(":")
    except KeyError:
        raise HarnessError(f"unknown backend {backend!r} (known: {', '.join(sorted(BACKENDS))})") from None
    return getattr(importlib.import_module(module), cls)(client, **options)
