"""Swarm membership and the Docker engine of each swarm node.

Swarm mode is never entered or left silently: the backend uses the swarm the engine
is in; only when asked (``init_swarm``) does it run the equivalent of
``docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377``, marking
the swarm with the label ``sd.swarm-init=<run id>``. The cluster of that run leaves the
swarm on ``down`` (``gc`` on any harness-made swarm), and only once no harness
service is left on it.

A task's network namespace is entered through the engine of the swarm node it runs on
(``docker exec`` there). ``Engines`` maps swarm nodes to Docker clients: the node of
the manager the harness talks to is that client; others come from ``hosts`` (or the
``SD_SWARM_HOSTS`` environment variable), keyed by swarm node hostname or ID, valued by
a Docker URL (``ssh://user@host``, ``tcp://host:2376``) or a client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ..errors import HarnessError

LABEL_INIT = "sd.swarm-init"
# Engine URL of each other swarm node: "hostname=ssh://user@host,other=tcp://10.0.0.2:2376".
HOSTS_ENV = "SD_SWARM_HOSTS"
INIT_HINT = ("run `docker swarm init --advertise-addr 127.0.0.1` first, or pass --init-swarm "
             "(Python: SwarmBackend(init_swarm=True))")


def hosts_from_env(value: str | None = None) -> dict[str, str]:
    """Parse ``SD_SWARM_HOSTS`` (``name=url,...``) into {swarm node hostname or ID: engine URL}."""
    text = os.environ.get(HOSTS_ENV, "") if value is None else value
    hosts = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, sep, url = item.partition("=")
        if not sep or not node or not url:
            raise HarnessError(f"{HOSTS_ENV}: bad entry {item!r}, expected hostname=docker-url")
        hosts[node] = url
    return hosts


def swarm_info(client) -> dict:
    """The engine's ``Swarm`` section of ``docker info``."""
    return client.info().get("Swarm") or {}


def ensure(client, init: bool, run_id: str) -> bool:
    """Check the engine is a swarm manager, or make it one when ``init``; return whether it was made now."""
    info = swarm_info(client)
    state = info.get("LocalNodeState", "inactive")
    if state == "active":
        if not info.get("ControlAvailable"):
            raise HarnessError("this Docker engine is a swarm worker; point DOCKER_HOST at a swarm manager")
        return False
    if state != "inactive":
        raise HarnessError(f"the Docker engine's swarm is {state}; fix it (`docker info`) first")
    if not init:
        raise HarnessError(f"the Docker engine is not in a swarm: {INIT_HINT}")
    client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377", labels={LABEL_INIT: run_id})
    return True


def leave_if_made_by(client, run_id: str | None, services_left: int) -> bool:
    """Leave the swarm if the harness made it (for ``run_id``, or any run when None) and no service is left."""
    if services_left or swarm_info(client).get("LocalNodeState") != "active":
        return False
    client.swarm.reload()
    made_by = ((client.swarm.attrs.get("Spec") or {}).get("Labels") or {}).get(LABEL_INIT)
    if made_by is None or (run_id is not None and made_by != run_id):
        return False
    client.swarm.leave(force=True)
    return True


class Engines:
    """The Docker client of each swarm node, chosen by a task's node ID."""

    def __init__(self, manager, hosts: Mapping[str, object] | None = None, connect=None):
        self.manager = manager                    # client of the manager the harness talks to
        self.hosts = dict(hosts_from_env() if hosts is None else hosts)
        self._connect = connect                   # URL -> client (default: docker.DockerClient)
        self._clients: dict[str, object] = {}     # swarm node ID -> client
        self._by_url: dict[str, object] = {}      # engine URL -> client
        self._local: str | None = None

    def local_id(self) -> str:
        """Swarm node ID of the manager's own engine."""
        if self._local is None:
            self._local = swarm_info(self.manager).get("NodeID", "")
        return self._local

    def for_node(self, node_id: str):
        """The client of the engine that runs swarm node ``node_id``."""
        if not node_id or node_id == self.local_id():
            return self.manager
        if node_id not in self._clients:
            hostname = (self.manager.nodes.get(node_id).attrs.get("Description") or {}).get("Hostname", "")
            target = self.hosts.get(node_id) or self.hosts.get(hostname)
            if target is None:
                raise HarnessError(f"a task runs on swarm node {hostname or node_id}, whose engine the harness "
                                   f"cannot reach: set {HOSTS_ENV}={hostname or node_id}=ssh://user@host")
            self._clients[node_id] = self._client(target)
        return self._clients[node_id]

    def all(self) -> list:
        """The manager's client and every other engine named in ``hosts``."""
        return [self.manager, *(self._client(t) for t in self.hosts.values())]

    def _client(self, target):
        """``target`` itself if it is a client, else a client of that URL (one per URL)."""
        if not isinstance(target, str):
            return target
        if target not in self._by_url:
            if self._connect is None:
                import docker  # noqa: PLC0415 - only multi-host swarms need more clients

                self._connect = lambda url: docker.DockerClient(base_url=url)  # type: ignore[attr-defined]
            self._by_url[target] = self._connect(target)
        return self._by_url[target]
