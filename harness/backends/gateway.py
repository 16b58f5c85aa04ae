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

from .. import topology

# Container port of node n<k> in a gateway: INNER_BASE + k (n1 -> 7001).
INNER_BASE = 7000
GATEWAY_COMMAND = "sd-gateway"
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
