"""The Docker engine backend: one bridge network, one container and volume per node.

Every object carries the labels ``sd.harness=1``, ``sd.cluster=<name>``,
``sd.run=<uuid>`` (nodes also ``sd.node=n<k>``), so another process finds a
cluster by its name and ``gc`` reaps what a crashed run left. Container
``sd-<cluster>-n<k>`` has hostname and network alias ``n<k>``, a fixed IP (so
peers' fault rules stay valid across restarts) and its API port published on a
fixed free 127.0.0.1 port (so its URL stays valid across restarts). Commands run
with ``docker exec -u root`` inside the container, i.e. in its network namespace.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import docker
import docker.errors
import docker.types

from .. import hostlimits, topology
from ..errors import ClusterExists, ClusterNotFound, HarnessError, ImageNotFound, NodeNotFound
from ..localnode import free_port
from . import DEFAULT_IMAGE, Deployment, Node, Spec
from .containers import ContainerNodeOps, connect, docker_errors

LABEL_HARNESS = "sd.harness"
LABEL_CLUSTER = "sd.cluster"
LABEL_RUN = "sd.run"
LABEL_NODE = "sd.node"

NODE_PORT = topology.NODE_PORT
# Pool the cluster subnets (/24 each) are taken from; override with SD_HARNESS_POOL.
SUBNET_POOL = os.environ.get("SD_HARNESS_POOL", "10.213.0.0/16")
# Offset of node k's host number in its subnet: n1 = .11, n2 = .12, ...
HOST_OFFSET = 10
# Parallel Docker calls at most (gc).
MAX_WORKERS = 8

_PORT_IN_USE = ("port is already allocated", "address already in use")


def is_local(client) -> bool:
    """Whether the engine runs on this host (a unix socket), so this host's limits apply."""
    return str(getattr(client.api, "base_url", "")).startswith("http+docker://")


def running_cluster_sizes(client) -> list[int]:
    """Return the node count of every harness cluster that has containers on the engine."""
    containers = client.containers.list(all=True, filters={"label": LABEL_HARNESS})
    nodes = (c for c in containers if topology.is_node_name(c.labels.get(LABEL_NODE)))
    sizes = Counter(c.labels.get(LABEL_CLUSTER, "") for c in nodes)
    return list(sizes.values())


def labels_filter(cluster: str | None = None) -> list[str]:
    """The label filter selecting harness objects (of one cluster, or of all)."""
    return [f"{LABEL_HARNESS}=1"] + ([f"{LABEL_CLUSTER}={cluster}"] if cluster is not None else [])




class EngineBackend(ContainerNodeOps):
    """Nodes as containers of one Docker engine (client passed in, or from the environment).

    A node's container is ``sd-<cluster>-n<k>`` (``exec``, ``kill``, ``stop``, ``pause``, ``unpause``
    and ``logs`` act on it, see ``ContainerNodeOps``); ``start`` and ``restart`` start the same one again.
    """

    name = "docker"

    def __init__(self, client=None):
        self._client = client

    # ------------------------------------------------------------------ clusters

    @docker_errors
    def prepare(self, spec: Spec, size: int) -> None:
        """Check the image is local, the name free, and the host's ARP table big enough."""
        self._client = connect(self._client)
        try:
            self.client.images.get(spec.image)
        except docker.errors.ImageNotFound:
            raise ImageNotFound(f"image {spec.image} not found locally; build it with docker/build-image.sh") from None
        if self._containers(spec.name):
            raise ClusterExists(f"cluster {spec.name!r} already exists; run `down --name {spec.name}` or `gc` first")
        if is_local(self.client):
            hostlimits.check_neighbour_table(size, running_cluster_sizes(self.client))

    @docker_errors
    def create(self, spec: Spec) -> Deployment:
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
            gateway = str(subnet.network_address + 1)
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet), gateway=gateway)])
            try:
                self.client.networks.create(_network(spec.name), driver="bridge", ipam=ipam,
                                            labels=_labels(spec), check_duplicate=True)
            except docker.errors.APIError as exc:
                if "overlap" in str(exc).lower():  # another cluster took it meanwhile
                    last_error = exc
                    continue
                raise
            return Deployment(spec, {}, harness_sources=[gateway], subnet=str(subnet))
        raise HarnessError(f"no free /24 left in {SUBNET_POOL} for the cluster network ({last_error})")

    @docker_errors
    def launch(self, spec: Spec, deployment: Deployment, node: str, seeds: Sequence[str]) -> Node:
        """Create the node's volume and container and start it (retrying a host-port clash)."""
        if deployment.subnet is None:
            raise HarnessError(f"cluster {spec.name!r} has no network to launch {node} on")
        ip = str(ipaddress.ip_network(deployment.subnet).network_address + HOST_OFFSET + topology.node_index(node))
        volume = f"sd-{spec.name}-{node}-data"
        self.client.volumes.create(volume, labels=_labels(spec, node))
        container_name = f"sd-{spec.name}-{node}"
        for attempt in range(3):
            port = free_port()
            container = self.client.containers.create(
                spec.image,
                command=list(spec.command) if spec.command else None,
                name=container_name,
                hostname=node,
                environment=spec.node_env(node, seeds),
                labels=_labels(spec, node),
                cap_add=["NET_ADMIN"],
                # The harness waits for /health itself; the image's HEALTHCHECK (for compose
                # and docker run) would cost every node an exec every 30 s (a runc process in
                # its cgroup, and dockerd's and containerd's work besides): left off here.
                healthcheck={"test": ["NONE"]},
                ports={f"{NODE_PORT}/tcp": ("127.0.0.1", port)},
                volumes={volume: {"bind": "/data", "mode": "rw"}},
                network=_network(spec.name),
                networking_config={_network(spec.name): self.client.api.create_endpoint_config(
                    ipv4_address=ip, aliases=[node])},
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
        deployment.nodes[node] = Node(name=node, container=container_name, ip=ip, host_port=port)
        return deployment.nodes[node]

    @docker_errors
    def find(self, cluster: str) -> Deployment:
        """Rebuild the Deployment of a running cluster from its containers' labels and settings."""
        containers = self._containers(cluster)
        if not containers:
            raise ClusterNotFound(f"no cluster named {cluster!r} (start one with `up --name {cluster}`)")
        first = containers[0]
        config = first.attrs.get("Config") or {}
        env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
        spec = Spec(
            name=cluster,
            image=config.get("Image", DEFAULT_IMAGE),
            interval=float(env["SD_INTERVAL"]) if "SD_INTERVAL" in env else None,
            fanout=int(env["SD_FANOUT"]) if "SD_FANOUT" in env else None,
            ttl=float(env["SD_TTL"]) if "SD_TTL" in env else None,
            run_id=first.labels.get(LABEL_RUN, ""),
            gossip_keys=env.get("SD_GOSSIP_KEYS", ""),  # a node added later must sign with the same key
        )
        deployment = Deployment(spec, {c.labels[LABEL_NODE]: _node_of(c) for c in containers})
        try:
            net = self.client.networks.get(_network(cluster))
            deployment.subnet = str(ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"]))
            deployment.harness_sources = [net.attrs["IPAM"]["Config"][0].get("Gateway")
                                          or str(ipaddress.ip_network(deployment.subnet).network_address + 1)]
        except (docker.errors.NotFound, KeyError, IndexError):
            pass
        return deployment

    @docker_errors
    def states(self, cluster: str) -> dict[str, str]:
        """Docker state of each node container of ``cluster``."""
        return {c.labels[LABEL_NODE]: c.status for c in self._containers(cluster)}

    @docker_errors
    def remove(self, cluster: str) -> dict[str, int]:
        """Remove the cluster's containers, volumes and network."""
        return self.gc(cluster)

    @docker_errors
    def gc(self, cluster: str | None = None) -> dict[str, int]:
        """Remove containers, volumes and networks labelled ``sd.harness=1`` (of one cluster or all)."""
        filters = {"label": labels_filter(cluster)}
        containers = self.client.containers.list(all=True, filters=filters)
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            list(pool.map(lambda c: _ignore_gone(c.remove, force=True, v=True), containers))
        volumes = self.client.volumes.list(filters=filters)
        for v in volumes:
            _ignore_gone(v.remove, force=True)
        networks = self.client.networks.list(filters=filters)
        for net in networks:
            for attempt in range(10):  # endpoints of just-removed containers linger briefly
                try:
                    _ignore_gone(net.remove)
                    break
                except docker.errors.APIError:
                    if attempt == 9:
                        raise
                    time.sleep(0.3)
        return {"containers": len(containers), "volumes": len(volumes), "networks": len(networks)}

    # ------------------------------------------------------------------ nodes

    @docker_errors
    def state(self, node: Node) -> str:
        """Docker state of the node's container: running, paused, exited, ..."""
        return self._container(node).status

    @docker_errors
    def start(self, node: Node) -> None:
        """Start the stopped container (fresh network namespace, same IP, port and volume)."""
        self._container(node).start()

    @docker_errors
    def restart(self, node: Node, timeout: int = 10) -> None:
        """Restart the container."""
        self._container(node).restart(timeout=timeout)

    def url(self, node: Node) -> str:
        """The API port published on 127.0.0.1."""
        return node.url

    # ------------------------------------------------------------------ internals

    def _containers(self, cluster: str) -> list:
        """The cluster's node containers, n1 first."""
        found = self.client.containers.list(all=True, filters={"label": labels_filter(cluster)})
        return sorted((c for c in found if topology.is_node_name(c.labels.get(LABEL_NODE))),
                      key=lambda c: topology.node_index(c.labels[LABEL_NODE]))

    def _container(self, node: Node):
        try:
            return self.client.containers.get(node.container)
        except docker.errors.NotFound:
            raise NodeNotFound(f"container of {node.name} ({node.container}) is gone") from None


def _network(cluster: str) -> str:
    return f"sd-{cluster}"


def _labels(spec: Spec, node: str | None = None) -> dict[str, str]:
    labels = {LABEL_HARNESS: "1", LABEL_CLUSTER: spec.name, LABEL_RUN: spec.run_id}
    if node is not None:
        labels[LABEL_NODE] = node
    return labels


def _node_of(c) -> Node:
    """The Node a container stands for, from its labels, network settings and port bindings."""
    nets = (c.attrs.get("NetworkSettings") or {}).get("Networks") or {}
    ip = ""
    for net in nets.values():
        ip = ((net.get("IPAMConfig") or {}).get("IPv4Address")) or net.get("IPAddress") or ip
    bindings = ((c.attrs.get("HostConfig") or {}).get("PortBindings") or {}).get(f"{NODE_PORT}/tcp") or [{}]
    return Node(name=c.labels[LABEL_NODE], container=c.name, ip=ip, host_port=int(bindings[0].get("HostPort") or 0))


def _ignore_gone(remove, **kwargs) -> None:
    """Call ``remove``; an object already gone is fine."""
    try:
        remove(**kwargs)
    except docker.errors.NotFound:
        pass
