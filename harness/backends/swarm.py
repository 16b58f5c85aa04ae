"""The Docker Swarm backend: one service per node on an attachable overlay network.

Why one service per node, not one service of N tasks: a node is a stable identity the
faults address one at a time. Service ``sd-<cluster>-n<k>`` has hostname and network
alias ``n<k>`` (so seeds ``n1:5000`` and advertised addresses mean what they mean on
the engine backend), its own environment (``SD_ADVERTISE``) and volume, and can be
killed and started alone; a replicated service can neither alias one task nor bring
one chosen task back.

- *Endpoint mode dnsrr*: ``n<k>`` resolves to the task's own IP, no virtual IP, so the
  iptables rules planned per peer IP match real traffic.
- *Restart policy none*: a killed or stopped node stays down; ``start`` and ``restart``
  force an update of its service, i.e. a new task (new container, fresh network
  namespace, same volume). Unlike the engine backend the new task gets a new overlay
  IP: cuts installed before it started do not hold for it (partition again).
- *Placement*: node k is pinned to swarm node ``(k-1) mod M`` (ready, active, sorted by
  hostname), so its volume is found again after a restart.
- *Image by ID*: services name the local image by its ID, which swarm never tries to
  pull; on several hosts load the same image on each (``docker save | ssh host docker load``).
- *Health check off*: swarm would kill a paused node (restart policy none: for good)
  once its image health check failed; the harness waits on /health itself.
- *Reaching nodes*: a gateway container publishes one 127.0.0.1 port per node
  (``harness.backends.gateway``); swarm's ingress, which publishes on every interface,
  is never used. Faults run in a task's namespace through the engine of the swarm node
  it runs on (``swarmmode.Engines``).

Services, their task containers, the overlay network, the node volumes and the gateway
carry ``sd.harness=1``, ``sd.cluster``, ``sd.run`` and ``sd.backend=swarm``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import replace

import docker.errors

from .. import hostlimits, topology
from ..errors import ClusterExists, ClusterNotFound, ImageNotFound, NodeNotFound, NodeStartError
from ..wait import wait_until
from . import Deployment, Node, Spec, gateway, swarmgc, swarmmode
from .containers import ContainerNodeOps, connect, docker_errors
from .engine import LABEL_CLUSTER, LABEL_NODE, LABEL_RUN, is_local, running_cluster_sizes
from .swarmplan import (
    free_subnet,
    network_name,
    service_kwargs,
    service_name,
    spec_of,
    swarm_filter,
    swarm_labels,
    swarm_node_for,
)
from .tasks import container_id, current_task, harness_state, task_ip

# Seconds a new task may take to run.
TASK_TIMEOUT = 60.0


class SwarmBackend(ContainerNodeOps):
    """Nodes as swarm services of the manager ``client`` (passed in, or from the environment).

    A node's container is its current task's, on the engine of the swarm node it runs on
    (``exec``, ``kill``, ``stop``, ``pause``, ``unpause`` and ``logs`` act on it, see ``ContainerNodeOps``).
    Restart policy none: a SIGKILL or a stop ends the task for good; ``start`` and ``restart``
    replace the task.
    """

    name = "swarm"

    def __init__(self, client=None, init_swarm: bool = False, hosts: Mapping[str, object] | None = None):
        """``init_swarm``: make the engine a single-node swarm if it is in none (left again on ``down``).

        ``hosts``: swarm node hostname or ID -> Docker URL or client of its engine
        (default: ``SD_SWARM_HOSTS``); the manager's own node needs no entry.
        """
        self._client = client
        self.init_swarm = init_swarm
        self._hosts = hosts
        self._engines: swarmmode.Engines | None = None
        self._deployments: dict[str, Deployment] = {}   # cluster -> what up/attach use (IPs refreshed)
        self._sizes: dict[str, int] = {}                # cluster -> nodes the first gateway serves
        self._images: dict[str, str] = {}               # cluster -> image ID
        self.initialized_swarm = False                  # whether this backend ran swarm init

    @property
    def engines(self) -> swarmmode.Engines:
        """The Docker client of each swarm node."""
        if self._engines is None:
            self._engines = swarmmode.Engines(self.client, self._hosts)
        return self._engines

    # ------------------------------------------------------------------ clusters

    @docker_errors
    def prepare(self, spec: Spec, size: int) -> None:
        """Check (or init) the swarm, the local image, the free name and the host's ARP table."""
        self._client = connect(self._client)
        self.initialized_swarm = swarmmode.ensure(self.client, self.init_swarm, spec.run_id) or self.initialized_swarm
        try:
            self._images[spec.name] = self.client.images.get(spec.image).id
        except docker.errors.ImageNotFound:
            raise ImageNotFound(f"image {spec.image} not found locally; build it with docker/build-image.sh") from None
        if self._services(spec.name) or self.client.networks.list(names=[network_name(spec.name)]):
            raise ClusterExists(f"cluster {spec.name!r} already exists; run `down --name {spec.name}` or `gc` first")
        if is_local(self.client):
            hostlimits.check_neighbour_table(size, running_cluster_sizes(self.client) + self._cluster_sizes())
        self._sizes[spec.name] = size

    @docker_errors
    def create(self, spec: Spec) -> Deployment:
        """Create the attachable overlay network and the gateway of nodes n1..n<size>."""
        subnet = free_subnet(net.attrs for net in self.client.networks.list())
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        self.client.networks.create(network_name(spec.name), driver="overlay", attachable=True, ipam=ipam,
                                    labels=swarm_labels(spec), check_duplicate=True)
        deployment = Deployment(spec, {}, subnet=subnet)
        self._deployments[spec.name] = deployment
        self._start_gateway(spec, deployment, topology.node_names(self._sizes.get(spec.name, 0)))
        return deployment

    @docker_errors
    def launch(self, spec: Spec, deployment: Deployment, node: str, seeds: Sequence[str]) -> Node:
        """Create node ``node``'s service, wait for its task to run; a node past the gateway's gets its own."""
        image = self._images.get(spec.name) or self.client.images.get(spec.image).id
        host = swarm_node_for(node, [n.attrs for n in self.client.nodes.list()])
        self.client.services.create(**service_kwargs(spec, node, seeds, image, host))
        task = self._await_task(service_name(spec.name, node), previous=())
        ports = self._ports(deployment)
        if node not in ports:
            ports = self._start_gateway(spec, deployment, [node], first=node)
        deployment.nodes[node] = Node(name=node, container=service_name(spec.name, node),
                                      ip=task_ip(task, network_name(spec.name)), host_port=ports[node])
        return deployment.nodes[node]

    @docker_errors
    def find(self, cluster: str) -> Deployment:
        """Rebuild the Deployment of a running cluster from its services, tasks, gateways and network."""
        services = self._services(cluster)
        if not services:
            raise ClusterNotFound(f"no swarm cluster named {cluster!r} (start one with `up --backend swarm "
                                  f"--name {cluster}`)")
        deployment = Deployment(spec_of(services[0].attrs, cluster), {})
        self._deployments[cluster] = deployment
        ports = self._ports(deployment)
        for svc, task in self._tasks(services).items():
            node = svc.attrs["Spec"]["Labels"][LABEL_NODE]
            deployment.nodes[node] = Node(node, svc.name, task_ip(task, network_name(cluster)), ports.get(node, 0))
        try:
            net = self.client.networks.get(network_name(cluster))
            deployment.subnet = str(ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"]))
        except (docker.errors.NotFound, KeyError, IndexError, TypeError):
            pass
        return deployment

    @docker_errors
    def states(self, cluster: str) -> dict[str, str]:
        """State of each node of ``cluster``: its current task's container, else the task's own state."""
        tasks = self._tasks(self._services(cluster))
        containers: dict[str, str] = {}
        for node_id in {t.get("NodeID", "") for t in tasks.values() if t}:
            found = self.engines.for_node(node_id).containers.list(all=True, filters={"label": swarm_filter(cluster)})
            containers.update({c.id: c.status for c in found})
        return {svc.attrs["Spec"]["Labels"][LABEL_NODE]: harness_state(task, containers) for svc, task in tasks.items()}

    @docker_errors
    def remove(self, cluster: str) -> dict[str, int]:
        """Remove the cluster's services, containers, volumes and network; leave a swarm its run made."""
        run_ids = {s.attrs["Spec"].get("Labels", {}).get(LABEL_RUN) for s in self._services(cluster)}
        deployment = self._deployments.pop(cluster, None)
        if deployment is not None:
            run_ids.add(deployment.spec.run_id)
        removed = self.gc(cluster, leave=False)
        left = any(swarmmode.leave_if_made_by(self.client, r, len(self._services(None))) for r in run_ids if r)
        return {**removed, "swarm_left": int(left)}

    @docker_errors
    def gc(self, cluster: str | None = None, leave: bool = True) -> dict[str, int]:
        """Remove the swarm objects labelled ``sd.harness=1`` (of one cluster or all), on every known engine.

        With ``leave`` (and no cluster named), a swarm the harness made is left once empty.
        """
        if swarmmode.swarm_info(self.client).get("LocalNodeState") != "active":
            return {"services": 0, "containers": 0, "volumes": 0, "networks": 0, "swarm_left": 0}
        removed = swarmgc.remove(self.client, self.engines.all(), swarm_filter(cluster))
        left = leave and cluster is None and swarmmode.leave_if_made_by(self.client, None, 0)
        return {**removed, "swarm_left": int(left)}

    # ------------------------------------------------------------------ nodes

    @docker_errors
    def state(self, node: Node) -> str:
        """State of the node's current task: its container's (running, paused, exited), else the task's."""
        task = self._task(node)
        return harness_state(task, self._container_states(task))

    @docker_errors
    def start(self, node: Node) -> None:
        """Force an update of the node's service: a new task on the same volume (and a new IP)."""
        self._replace_task(node)

    @docker_errors
    def restart(self, node: Node, timeout: int = 10) -> None:
        """Replace the node's task (swarm stops the old one within the service's grace period)."""
        self._replace_task(node)

    def url(self, node: Node) -> str:
        """The node's port on the gateway, published on 127.0.0.1."""
        return node.url

    # ------------------------------------------------------------------ internals

    def _services(self, cluster: str | None) -> list:
        """The node services of ``cluster`` (every cluster when None), n1 first."""
        found = self.client.services.list(filters={"label": swarm_filter(cluster)})
        nodes = [s for s in found if topology.is_node_name((s.attrs["Spec"].get("Labels") or {}).get(LABEL_NODE))]
        return sorted(nodes, key=lambda s: topology.node_index(s.attrs["Spec"]["Labels"][LABEL_NODE]))

    def _cluster_sizes(self) -> list[int]:
        sizes: dict[str, int] = {}
        for s in self._services(None):
            cluster = s.attrs["Spec"]["Labels"].get(LABEL_CLUSTER, "")
            sizes[cluster] = sizes.get(cluster, 0) + 1
        return list(sizes.values())

    def _tasks(self, services: Sequence) -> dict:
        """service -> its current task (None when it has none), all fetched in one call."""
        if not services:
            return {}
        tasks = self.client.api.tasks(filters={"service": [s.id for s in services]})
        return {s: current_task([t for t in tasks if t.get("ServiceID") == s.id]) for s in services}

    def _service(self, node: Node):
        try:
            return self.client.services.get(node.container)
        except docker.errors.NotFound:
            raise NodeNotFound(f"service of {node.name} ({node.container}) is gone") from None

    def _task(self, node: Node) -> dict | None:
        return self._tasks([self._service(node)]).popitem()[1]

    def _container_states(self, task: dict | None) -> dict[str, str]:
        """{container ID: state} of the task's container (empty when it has none or it is gone)."""
        cid = container_id(task)
        if not cid or task is None:
            return {}
        try:
            return {cid: self.engines.for_node(task.get("NodeID", "")).containers.get(cid).status}
        except docker.errors.NotFound:
            return {}

    def _container(self, node: Node):
        """The container of the node's current task, from the engine of the swarm node it runs on."""
        task = self._task(node)
        cid = container_id(task)
        if not cid or task is None:
            raise NodeNotFound(f"{node.name} has no container (its task is {harness_state(task, {})})")
        try:
            return self.engines.for_node(task.get("NodeID", "")).containers.get(cid)
        except docker.errors.NotFound:
            raise NodeNotFound(f"container of {node.name} ({cid[:12]}) is gone") from None

    def _replace_task(self, node: Node) -> None:
        """Force-update the node's service, wait for the new task, refresh the node's IP."""
        svc = self._service(node)
        old = [t["ID"] for t in self.client.api.tasks(filters={"service": [svc.id]})]
        force = (svc.attrs["Spec"]["TaskTemplate"].get("ForceUpdate") or 0) + 1
        self.client.api.update_service(svc.id, svc.version, task_template={"ForceUpdate": force},
                                       fetch_current_spec=True)
        task = self._await_task(svc.name, previous=old)
        cluster = svc.attrs["Spec"]["Labels"].get(LABEL_CLUSTER, "")
        deployment = self._deployments.get(cluster)
        if deployment is not None and node.name in deployment.nodes:
            deployment.nodes[node.name] = replace(deployment.nodes[node.name],
                                                  ip=task_ip(task, network_name(cluster)))

    def _await_task(self, service: str, previous: Sequence[str]) -> dict:
        """Wait until ``service`` has a task not in ``previous`` that runs; NodeStartError if it ends or lags."""

        def newest() -> dict | None:
            tasks = self.client.api.tasks(filters={"service": [service]})
            return current_task([t for t in tasks if t["ID"] not in previous])

        def settled(task: dict | None) -> bool:
            return task is not None and harness_state(task, {}) not in ("created", "missing")

        outcome = wait_until(newest, passed=settled, timeout=TASK_TIMEOUT, interval=0.2)
        task = outcome.last
        if task is None or harness_state(task, {}) != "running":
            status = (task or {}).get("Status") or {}
            detail = status.get("Err") or status.get("Message") or f"no running task in {TASK_TIMEOUT:g}s"
            raise NodeStartError(f"swarm service {service}: {status.get('State', 'no task')}: {detail}")
        return task

    def _gateways(self, cluster: str) -> list:
        filters = {"label": swarm_filter(cluster) + [f"{gateway.LABEL_ROLE}=gateway"]}
        return self.client.containers.list(all=True, filters=filters)

    def _ports(self, deployment: Deployment) -> dict[str, int]:
        """node -> 127.0.0.1 port over the cluster's gateways; their overlay IPs become harness sources."""
        ports: dict[str, int] = {}
        sources = []
        for gw in self._gateways(deployment.spec.name):
            ports.update(gateway.host_ports((gw.attrs.get("HostConfig") or {}).get("PortBindings") or {}))
            net = ((gw.attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network_name(gw.labels.get(
                LABEL_CLUSTER, ""))) or {}
            if net.get("IPAddress"):
                sources.append(net["IPAddress"])
        deployment.harness_sources = sources
        return ports

    def _start_gateway(self, spec: Spec, deployment: Deployment, nodes: Sequence[str],
                       first: str | None = None) -> dict[str, int]:
        """Run a gateway for ``nodes`` on free 127.0.0.1 ports (retrying a clash); return all ports."""
        if nodes:
            gateway.start(self.client, self._images.get(spec.name, spec.image), gateway.name(spec.name, first),
                          network_name(spec.name), nodes, swarm_labels(spec))
        return self._ports(deployment)


