"""A fake Docker SDK client that records every call and models the network it is told to fault.

Enough of ``docker.DockerClient`` for the harness's engine backend: images,
networks, volumes and containers with labels, state changes, logs and
``exec_run``. Execs are answered by a small model of a container: iptables scripts
install rules into per-container chains, ``sd-probe connect`` answers from those
rules (a SYN or its answer crossing a DROP rule fails the connect), ``tc`` netem
works only when ``netem`` is set, ``sd-probe stopped`` reads a SIGSTOP flag.
Switches make the model lie the way a broken host would: ``rules_enforced=False``
(rules installed, traffic unaffected), ``loss_enforced=False``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field

import docker.errors


@dataclass
class ExecResult:
    exit_code: int
    output: bytes


@dataclass
class FakeVolume:
    name: str
    labels: dict
    client: FakeDockerClient

    def remove(self, force=False):
        self.client.calls.append(("volume.remove", self.name))
        self.client.volumes.items.pop(self.name, None)


@dataclass
class FakeNetwork:
    name: str
    labels: dict
    attrs: dict
    client: FakeDockerClient

    def remove(self):
        self.client.calls.append(("network.remove", self.name))
        self.client.networks.items.pop(self.name, None)


@dataclass
class FakeContainer:
    name: str
    labels: dict
    attrs: dict
    client: FakeDockerClient
    status: str = "created"
    sigstopped: bool = False
    rules: dict = field(default_factory=dict)   # chain -> list of rule argument lists
    delay_ms: float = 0.0
    execs: list = field(default_factory=list)   # argv of every exec, in order

    @property
    def ip(self) -> str:
        net = next(iter(self.attrs["NetworkSettings"]["Networks"].values()))
        return net["IPAMConfig"]["IPv4Address"]

    def _record(self, *call):
        self.client.calls.append((call[0], self.name, *call[1:]))

    def start(self):
        self._record("start")
        self.status, self.rules, self.delay_ms = "running", {}, 0.0  # a fresh network namespace

    def kill(self, signal="SIGKILL"):
        self._record("kill", signal)
        if signal == "SIGSTOP":
            self.sigstopped = self.client.sigstop_works
        elif signal == "SIGCONT":
            self.sigstopped = False
        else:
            self.status = "exited"

    def stop(self, timeout=10):
        self._record("stop", timeout)
        self.status = "exited"

    def restart(self, timeout=10):
        self._record("restart", timeout)
        self.start()

    def pause(self):
        self._record("pause")
        if not self.client.freezer_works:
            raise docker.errors.APIError("500 Server Error: unable to freeze")
        self.status = "paused"

    def unpause(self):
        self._record("unpause")
        self.status = "running"

    def remove(self, force=False, v=False):
        self._record("remove", force, v)
        self.client.containers.items.pop(self.name, None)

    def logs(self, tail=40):
        return f"log of {self.name}\n".encode()

    def exec_run(self, cmd, user=None):
        self.execs.append(list(cmd))
        self._record("exec", list(cmd), user)
        if self.status != "running":
            raise docker.errors.APIError(f"Container {self.name} is not running")
        rc, out = self.client.shell(self, list(cmd))
        return ExecResult(rc, out.encode())


class _Collection:
    def __init__(self, client):
        self.client, self.items = client, {}

    def list(self, all=False, filters=None):
        wanted = (filters or {}).get("label", [])
        wanted = [wanted] if isinstance(wanted, str) else wanted
        return [o for o in self.items.values() if all_labels_match(o.labels, wanted)]


def all_labels_match(labels: dict, wanted: list[str]) -> bool:
    """Docker's label filter: ``key`` or ``key=value``, all must hold."""
    for w in wanted:
        key, _, value = w.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


class _Containers(_Collection):
    def create(self, image, **kwargs):
        self.client.calls.append(("container.create", kwargs["name"], kwargs))
        net = kwargs["network"]
        endpoint = kwargs["networking_config"][net]
        port = kwargs["ports"]["5000/tcp"]
        attrs = {
            "Config": {"Image": image, "Env": [f"{k}={v}" for k, v in kwargs["environment"].items()]},
            "NetworkSettings": {"Networks": {net: {"IPAMConfig": {"IPv4Address": endpoint["IPv4Address"]},
                                                   "IPAddress": endpoint["IPv4Address"]}}},
            "HostConfig": {"PortBindings": {"5000/tcp": [{"HostIp": port[0], "HostPort": str(port[1])}]}},
        }
        c = FakeContainer(kwargs["name"], dict(kwargs["labels"]), attrs, self.client)
        self.items[c.name] = c
        return c

    def get(self, name):
        try:
            return self.items[name]
        except KeyError:
            raise docker.errors.NotFound(f"No such container: {name}") from None


class _Networks(_Collection):
    def create(self, name, driver=None, ipam=None, labels=None, check_duplicate=None):
        self.client.calls.append(("network.create", name, {"ipam": ipam, "labels": labels}))
        self.items[name] = FakeNetwork(name, dict(labels or {}), {"IPAM": dict(ipam)}, self.client)
        return self.items[name]

    def get(self, name):
        try:
            return self.items[name]
        except KeyError:
            raise docker.errors.NotFound(f"network {name} not found") from None


class _Volumes(_Collection):
    def create(self, name, labels=None):
        self.client.calls.append(("volume.create", name, labels))
        self.items[name] = FakeVolume(name, dict(labels or {}), self.client)
        return self.items[name]


class _Images:
    def __init__(self, present):
        self.present = set(present)

    def get(self, name):
        if name not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return name


class _Api:
    base_url = "tcp://fake-engine:2375"  # not a local socket: host limits are not checked

    @staticmethod
    def create_endpoint_config(ipv4_address=None, aliases=None):
        return {"IPv4Address": ipv4_address, "Aliases": aliases}


class FakeDockerClient:
    """Records calls in ``calls``; containers answer execs from the network model."""

    def __init__(self, images=("sd-node:latest",)):
        self.calls: list[tuple] = []
        self.api = _Api()
        self.images = _Images(images)
        self.containers = _Containers(self)
        self.networks = _Networks(self)
        self.volumes = _Volumes(self)
        self.rules_enforced = True   # False: iptables accepts rules that do nothing
        self.loss_enforced = True    # False: a loss rule lets every connect through
        self.netem = False           # tc netem available (it is not on the CI kernel)
        self.freezer_works = True    # False: docker pause fails with "unable to freeze"
        self.sigstop_works = True

    def ping(self):
        return True

    def container_at(self, ip: str) -> FakeContainer | None:
        return next((c for c in self.containers.items.values() if c.ip == ip), None)

    # ------------------------------------------------------------------ the model

    def shell(self, c: FakeContainer, argv: list[str]) -> tuple[int, str]:
        """Answer one exec in container ``c``."""
        if argv[:2] == ["sh", "-c"]:
            return self._script(c, argv[2])
        if argv[0] == "sd-probe":
            return 0, json.dumps(self._probe(c, argv[1:]))
        if argv[0] == "tc":
            if not self.netem:
                return 2, "Error: Specified qdisc kind is unknown."
            c.delay_ms = float(argv[-1].removesuffix("ms"))
            return 0, ""
        return 127, f"{argv[0]}: not found"

    def _script(self, c: FakeContainer, script: str) -> tuple[int, str]:
        for line in script.splitlines():
            words = shlex.split(line.split("||")[0].split("2>")[0])
            if not words or words[0] not in ("iptables", "iptables-legacy", "tc"):
                continue
            if words[0] == "tc":
                c.delay_ms = 0.0
                continue
            op, chain, rest = words[2], words[3] if len(words) > 3 else "", words[4:]
            if op == "-F":
                c.rules[chain] = []
            elif op == "-A":
                c.rules.setdefault(chain, []).append(rest)
            elif op == "-S":
                return 0, "\n".join(f"-A {chain} " + " ".join(r) for r in c.rules.get(chain, []))
        return 0, ""

    def _drops(self, c: FakeContainer, chain: str, flag: str, peer_ip: str, reply: bool) -> bool:
        """Whether a rule of ``c``'s ``chain`` drops a packet to/from ``peer_ip``."""
        if not self.rules_enforced:
            return False
        for rule in c.rules.get(chain, []):
            if flag in rule and rule[rule.index(flag) + 1] == peer_ip and rule[-1] == "DROP":
                if reply and "ORIGINAL" in rule:  # a reply travels in the REPLY direction
                    continue
                return True
        return False

    def connects(self, src: FakeContainer, ip: str) -> bool:
        """Whether a TCP connect from ``src`` to ``ip`` completes: SYN out and in, answer out and in."""
        dst = self.container_at(ip)
        if dst is None or dst.status != "running" or dst.sigstopped:
            return False
        return not (self._drops(src, "SD-FAULTS-OUT", "-d", dst.ip, False)
                    or self._drops(dst, "SD-FAULTS-IN", "-s", src.ip, False)
                    or self._drops(dst, "SD-FAULTS-OUT", "-d", src.ip, True)
                    or self._drops(src, "SD-FAULTS-IN", "-s", dst.ip, True))

    def _probe(self, c: FakeContainer, args: list[str]) -> dict:
        command, targets = args[0], [a for a in args[1:] if a.count(".") == 3]
        if command == "connect":
            return {ip: self.connects(c, ip) for ip in targets}
        if command == "loss":
            dst = self.container_at(targets[0])
            lossy = dst is not None and bool(dst.rules.get("SD-LOSS")) and self.loss_enforced
            return {"attempts": 1 if lossy else int(args[args.index("--attempts") + 1]), "failures": int(lossy)}
        if command == "connect-time":
            dst = self.container_at(targets[0])
            return {"seconds": (dst.delay_ms / 1000 if dst else 0) + 0.001 if self.connects(c, targets[0]) else None}
        return {"pid": 1, "state": "T (stopped)" if c.sigstopped else "S (sleeping)", "stopped": c.sigstopped}
