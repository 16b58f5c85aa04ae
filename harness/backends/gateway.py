"""The gateway of a swarm cluster: one plain container forwarding 127.0.0.1 ports to the nodes.

Swarm's own publishing (the ingress routing mesh) listens on every interface of every
host, so the swarm backend never uses it. Instead a container running ``sd-gateway``
(docker/gateway.py, in the node image) joins the cluster's attachable overlay network;
its port ``INNER_BASE + k`` forwards to ``n<k>:5000`` (resolved per connection, so a
restarted node is found at its new address) and is published on 127.0.0.1 only, at a
free port that stays the node's ``host_port`` for the cluster's life. Nodes added after
``up`` get a gateway of their own (published ports cannot be added to a container).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import docker.errors

from .. import topology
from ..errors import HarnessError
from ..localnode import free_port
from ..wait import wait_until

# Container port of node n<k> in a gateway: INNER_BASE + k (n1 -> 7001).
INNER_BASE = 7000
GATEWAY_COMMAND = "sd-gateway"
# What sd-gateway logs once every port listens.
READY = "forwarding"
# Seconds a gateway may take to listen.
START_TIMEOUT = 15.0
_PORT_IN_USE = ("port is already allocated", "address already in use")
LABEL_ROLE = "sd.role"


def name(cluster: str, first: str | None = None) -> str:
    """Container name of the cluster's gateway (``first`` names a later node's own gateway)."""
    return f"sd-{cluster}-gw" + (f"-{first}" if first else "")


def inner_port(node: str) -> int:
    """The gateway's container port forwarding to ``node``."""
    return INNER_BASE + topology.node_index(node)


def run_kwargs(image: str, container: str, network: str, host_ports: Mapping[str, int],
               labels: Mapping[str, str]) -> dict:
    """``client.containers.run`` arguments of a gateway forwarding ``host_ports`` (node -> 127.0.0.1 port)."""
    nodes = topology.sort_nodes(host_ports)
    return {
        "image": image,
        "command": [GATEWAY_COMMAND, *(f"{inner_port(n)}={topology.node_address(n)}" for n in nodes)],
        "name": container,
        "labels": {**labels, LABEL_ROLE: "gateway"},
        "network": network,
        "ports": {f"{inner_port(n)}/tcp": ("127.0.0.1", host_ports[n]) for n in nodes},
        "healthcheck": {"test": ["NONE"]},  # the node image's check asks port 5000, which a gateway lacks
        "detach": True,
    }


def host_ports(port_bindings: Mapping[str, Sequence[Mapping[str, str]] | None]) -> dict[str, int]:
    """node -> 127.0.0.1 port, read back from a gateway's ``HostConfig.PortBindings``."""
    found = {}
    for key, bindings in port_bindings.items():
        port = int(key.split("/")[0]) - INNER_BASE
        if port > 0 and bindings:
            found[f"n{port}"] = int(bindings[0].get("HostPort") or 0)
    return found


def start(client, image: str, container: str, network: str, nodes: Sequence[str], labels: Mapping[str, str]) -> None:
    """Run gateway ``container`` for ``nodes`` on free 127.0.0.1 ports (a clash retried) and wait until it listens."""
    for attempt in range(3):
        kwargs = run_kwargs(image, container, network, {n: free_port() for n in nodes}, labels)
        try:
            started = client.containers.run(**kwargs)
            break
        except docker.errors.APIError as exc:
            for leftover in client.containers.list(all=True, filters={"name": f"^{container}$"}):
                leftover.remove(force=True)
            if attempt == 2 or not any(s in str(exc).lower() for s in _PORT_IN_USE):
                raise
    if not wait_until(lambda: READY in started.logs().decode("utf-8", "replace"),
                      timeout=START_TIMEOUT, interval=0.1).ok:
        tail = started.logs(tail=5).decode("utf-8", "replace").strip().splitlines() or ["(no output)"]
        raise HarnessError(f"gateway {container} did not start (an image without sd-gateway? rebuild it with "
                           f"docker/build-image.sh): {tail[-1]}")
