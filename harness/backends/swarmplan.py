"""The swarm backend's plan as data: names, labels, a node's service, placement, the overlay subnet.

Pure functions (no Docker calls), unit-tested without an engine: what ``SwarmBackend``
asks swarm to create, and how it reads a cluster's Spec back from a service.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence

import docker.types

from .. import topology
from ..errors import HarnessError
from . import DEFAULT_IMAGE, Spec, gateway
from .engine import LABEL_CLUSTER, LABEL_HARNESS, LABEL_NODE, LABEL_RUN, labels_filter

LABEL_BACKEND = "sd.backend"
LABEL_IMAGE = "sd.image"
# Pool the overlay subnets (/24 each) are taken from; override with SD_HARNESS_SWARM_POOL.
SUBNET_POOL = os.environ.get("SD_HARNESS_SWARM_POOL", "10.214.0.0/16")
# Seconds between SIGTERM and SIGKILL when swarm stops a task.
STOP_GRACE = 10


def swarm_labels(spec: Spec, node: str | None = None) -> dict[str, str]:
    """Labels of a swarm object of ``spec``'s cluster (services also name their node)."""
    labels = {LABEL_HARNESS: "1", LABEL_CLUSTER: spec.name, LABEL_RUN: spec.run_id, LABEL_BACKEND: "swarm"}
    if node is not None:
        labels[LABEL_NODE] = node
    return labels


def swarm_filter(cluster: str | None = None) -> list[str]:
    """Label filter selecting the swarm backend's objects (of one cluster, or of all)."""
    return labels_filter(cluster) + [f"{LABEL_BACKEND}=swarm"]


def service_name(cluster: str, node: str) -> str:
    return f"sd-{cluster}-{node}"


def network_name(cluster: str) -> str:
    return f"sd-{cluster}"


def service_kwargs(spec: Spec, node: str, seeds: Sequence[str], image_id: str, swarm_node: str) -> dict:
    """``client.services.create`` arguments of node ``node``: pure, so the plan is unit-tested."""
    labels = swarm_labels(spec)  # task containers: no sd.node, so the engine backend never adopts them
    volume = f"sd-{spec.name}-{node}-data"
    return {
        "image": image_id,
        "args": list(spec.command) if spec.command else None,
        "name": service_name(spec.name, node),
        "labels": {**swarm_labels(spec, node), LABEL_IMAGE: spec.image},
        "container_labels": {**labels, gateway.LABEL_ROLE: "node"},
        "hostname": node,
        "env": [f"{k}={v}" for k, v in spec.node_env(node, seeds).items()],
        "cap_add": ["NET_ADMIN"],
        "mounts": [docker.types.Mount(target="/data", source=volume, type="volume", labels=labels)],
        "networks": [docker.types.NetworkAttachmentConfig(network_name(spec.name), aliases=[node])],
        "endpoint_spec": docker.types.EndpointSpec(mode="dnsrr"),
        "restart_policy": docker.types.RestartPolicy(condition="none"),
        "mode": docker.types.ServiceMode("replicated", replicas=1),
        "healthcheck": docker.types.Healthcheck(test=["NONE"]),
        "stop_grace_period": STOP_GRACE * 10**9,
        "constraints": [f"node.id=={swarm_node}"],
    }


def spec_of(service_attrs: Mapping, cluster: str) -> Spec:
    """The Spec a cluster was started with, read back from one of its services."""
    labels = service_attrs["Spec"].get("Labels") or {}
    container = service_attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    env = dict(e.split("=", 1) for e in container.get("Env") or [] if "=" in e)
    return Spec(
        name=cluster,
        image=labels.get(LABEL_IMAGE, DEFAULT_IMAGE),
        interval=float(env["SD_INTERVAL"]) if "SD_INTERVAL" in env else None,
        fanout=int(env["SD_FANOUT"]) if "SD_FANOUT" in env else None,
        ttl=float(env["SD_TTL"]) if "SD_TTL" in env else None,
        command=container.get("Args") or None,
        run_id=labels.get(LABEL_RUN, ""),
        gossip_keys=env.get("SD_GOSSIP_KEYS", ""),  # a node added later must sign with the same key
    )


def swarm_node_for(node: str, swarm_nodes: Iterable[Mapping]) -> str:
    """ID of the swarm node that runs ``node``: ready, active nodes by hostname, round robin.

    Pinning keeps a node on the host that holds its volume across restarts.
    """
    usable = [n for n in swarm_nodes if (n.get("Status") or {}).get("State") == "ready"
              and (n.get("Spec") or {}).get("Availability") == "active"]
    if not usable:
        raise HarnessError("no ready, active swarm node to place services on (`docker node ls`)")
    usable.sort(key=lambda n: ((n.get("Description") or {}).get("Hostname", ""), n["ID"]))
    return usable[(topology.node_index(node) - 1) % len(usable)]["ID"]


def free_subnet(networks: Iterable[Mapping], pool: str = SUBNET_POOL) -> str:
    """The first /24 of ``pool`` that overlaps none of ``networks`` (``docker network inspect`` dicts)."""
    taken = [ipaddress.ip_network(cfg["Subnet"], strict=False)
             for net in networks for cfg in (net.get("IPAM") or {}).get("Config") or [] if cfg.get("Subnet")]
    for subnet in ipaddress.ip_network(pool).subnets(new_prefix=24):
        if not any(subnet.overlaps(t) for t in taken if t.version == 4):
            return str(subnet)
    raise HarnessError(f"no free /24 left in {pool} for the cluster's overlay network")
