"""A fake swarm manager on top of the fake Docker client: services, tasks, nodes, swarm membership.

``FakeSwarmClient`` is a ``FakeDockerClient`` (its containers answer execs from the
same network model, so faults and probes work) that also keeps services. Creating
a service, or forcing an update of one, starts a task at once: a container with the
next free IP of the overlay network, carrying the service's container labels.
Swarm restarts nothing (the backend asks for restart policy none), as the real one.
``state`` is the engine's swarm state: "inactive", "active" (a manager) or "worker".
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field

import docker.errors

from .fakedocker import FakeContainer, FakeDockerClient, FakeNetwork, _Containers, _Networks, all_labels_match

IMAGE_ID = "sha256:" + "ab" * 32


class FakeTask(FakeContainer):
    """A task's container; its ID is its name."""

    @property
    def id(self):
        return self.name


class FakeGateway(FakeTask):
    def logs(self, tail=40):
        return b"sd-gateway forwarding 7001->n1:5000\n"


@dataclass(eq=False)  # hashable by identity, as the SDK's models are
class FakeService:
    id: str
    name: str
    attrs: dict
    client: FakeSwarmClient
    tasks: list = field(default_factory=list)

    @property
    def version(self):
        return self.attrs["Version"]["Index"]

    def remove(self):
        self.client.calls.append(("service.remove", self.name))
        self.client.services.items.pop(self.name, None)


class _Services:
    def __init__(self, client):
        self.client, self.items = client, {}

    def create(self, **kwargs):
        self.client.calls.append(("service.create", kwargs["name"], kwargs))
        spec = {"Name": kwargs["name"], "Labels": dict(kwargs["labels"]),
                "TaskTemplate": {"ContainerSpec": {"Image": kwargs["image"], "Env": list(kwargs["env"]),
                                                   "Args": kwargs.get("args"), "Labels": kwargs["container_labels"]},
                                 "ForceUpdate": 0},
                "EndpointSpec": dict(kwargs["endpoint_spec"])}
        svc = FakeService(f"svc{len(self.items) + 1}", kwargs["name"], {"Spec": spec, "Version": {"Index": 1}},
                          self.client)
        svc.kwargs = kwargs
        self.items[svc.name] = svc
        self.client.run_task(svc)
        return svc

    def get(self, name):
        try:
            return self.items[name]
        except KeyError:
            raise docker.errors.NotFound(f"service {name} not found") from None

    def list(self, filters=None):
        wanted = (filters or {}).get("label", [])
        return [s for s in self.items.values() if all_labels_match(s.attrs["Spec"]["Labels"], wanted)]


class _SwarmContainers(_Containers):
    def run(self, image, **kwargs):
        self.client.calls.append(("container.run", kwargs["name"], kwargs))
        if self.client.port_clashes:
            self.client.port_clashes -= 1
            self.items[kwargs["name"]] = FakeGateway(kwargs["name"], dict(kwargs["labels"]), {}, self.client)
            raise docker.errors.APIError("driver failed programming external connectivity: port is already allocated")
        ip = self.client.next_ip(kwargs["network"])
        ports = {k: [{"HostIp": v[0], "HostPort": str(v[1])}] for k, v in kwargs["ports"].items()}
        attrs = {"HostConfig": {"PortBindings": ports},
                 "NetworkSettings": {"Networks": {kwargs["network"]: {"IPAMConfig": {"IPv4Address": ip},
                                                                      "IPAddress": ip}}}}
        c = FakeGateway(kwargs["name"], dict(kwargs["labels"]), attrs, self.client, status="running")
        self.items[c.name] = c
        return c

    def list(self, all=False, filters=None):
        name = (filters or {}).get("name")
        found = super().list(all, filters)
        return [c for c in found if name is None or c.name == name.strip("^$")]


class _SwarmNetworks(_Networks):
    def create(self, name, driver=None, ipam=None, labels=None, check_duplicate=None, attachable=None):
        self.client.calls.append(("network.create", name, {"driver": driver, "attachable": attachable,
                                                            "ipam": ipam, "labels": labels}))
        subnet = ipam["Config"][0]["Subnet"]
        attrs = {"IPAM": {"Config": [{"Subnet": subnet}]}, "Driver": driver}
        self.items[name] = FakeNetwork(name, dict(labels or {}), attrs, self.client)
        return self.items[name]

    def list(self, names=None, filters=None):
        found = super().list(filters=filters)
        return [n for n in found if names is None or n.name in names]


class _Swarm:
    def __init__(self, client):
        self.client, self.attrs = client, {"Spec": {"Labels": {}}}

    def init(self, **kwargs):
        self.client.calls.append(("swarm.init", kwargs))
        self.client.state = "active"
        self.attrs = {"Spec": {"Labels": dict(kwargs.get("labels") or {})}}

    def reload(self):
        pass

    def leave(self, force=False):
        self.client.calls.append(("swarm.leave", force))
        self.client.state = "inactive"


@dataclass
class FakeNode:
    attrs: dict


class _Nodes:
    def __init__(self, nodes):
        self.nodes = nodes

    def list(self):
        return [FakeNode(n) for n in self.nodes]

    def get(self, node_id):
        return next(FakeNode(n) for n in self.nodes if n["ID"] == node_id)


class _SwarmApi:
    base_url = "tcp://fake-manager:2375"

    def __init__(self, client):
        self.client = client

    def tasks(self, filters=None):
        wanted = set((filters or {}).get("service", []))
        return [dict(t) for s in self.client.services.items.values() if s.id in wanted or s.name in wanted
                for t in s.tasks]

    def update_service(self, service_id, version, task_template=None, fetch_current_spec=False):
        svc = next(s for s in self.client.services.items.values() if s.id == service_id)
        self.client.calls.append(("service.update", svc.name, task_template))
        svc.attrs["Spec"]["TaskTemplate"].update(task_template or {})
        svc.attrs["Version"]["Index"] += 1
        for task in svc.tasks:
            if task["DesiredState"] == "running":
                task["DesiredState"] = "shutdown"
                self.client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"]).stop()
        self.client.run_task(svc)


def swarm_node(node_id, hostname, state="ready", availability="active"):
    return {"ID": node_id, "Description": {"Hostname": hostname}, "Status": {"State": state},
            "Spec": {"Availability": availability}}


class FakeSwarmClient(FakeDockerClient):
    """A swarm manager (``state="active"``) on node ``local``, or an engine in no swarm."""

    def __init__(self, state="active", nodes=None, images=("sd-node:latest",)):
        super().__init__(images)
        self.state = state
        self.api = _SwarmApi(self)
        self.containers = _SwarmContainers(self)
        self.networks = _SwarmNetworks(self)
        self.services = _Services(self)
        self.swarm = _Swarm(self)
        self.nodes = _Nodes(nodes or [swarm_node("local", "here")])
        self.port_clashes = 0                  # gateway runs that fail with "port is already allocated"
        self._ips: dict[str, itertools.count] = {}
        self._stamps = itertools.count(1)
        self.images.get = self._image

    def _image(self, name):
        if name not in self.images.present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return _Image(IMAGE_ID)

    def info(self):
        return {"Swarm": {"LocalNodeState": "inactive" if self.state == "inactive" else "active",
                          "ControlAvailable": self.state == "active", "NodeID": "local"}}

    def next_ip(self, network: str) -> str:
        subnet = ipaddress.ip_network(self.networks.get(network).attrs["IPAM"]["Config"][0]["Subnet"])
        counter = self._ips.setdefault(network, itertools.count(2))
        return str(subnet.network_address + next(counter))

    def run_task(self, svc: FakeService) -> None:
        """Start a new task of ``svc``: a running container with the next IP of its network."""
        kwargs = svc.kwargs
        net = kwargs["networks"][0]["Target"]
        ip = self.next_ip(net)
        cid = f"{svc.name}.{len(svc.tasks) + 1}"
        attrs = {"Config": {"Env": list(kwargs["env"])},
                 "NetworkSettings": {"Networks": {net: {"IPAMConfig": {"IPv4Address": ip}, "IPAddress": ip}}}}
        c = FakeTask(cid, dict(kwargs["container_labels"]), attrs, self, status="running")
        self.containers.items[cid] = c
        mount = kwargs["mounts"][0]
        if mount["Source"] not in self.volumes.items:
            self.volumes.create(mount["Source"], labels=mount["VolumeOptions"]["Labels"])
        node_id = kwargs["constraints"][0].split("==")[1]
        svc.tasks.append({
            "ID": f"task-{cid}", "ServiceID": svc.id, "NodeID": node_id, "DesiredState": "running",
            "CreatedAt": f"2026-01-01T00:00:{next(self._stamps):02d}.5Z",
            "Status": {"State": "running", "ContainerStatus": {"ContainerID": cid}},
            "NetworksAttachments": [{"Network": {"Spec": {"Name": net}}, "Addresses": [f"{ip}/24"]}],
        })


@dataclass
class _Image:
    id: str
