"""Every cluster kind implements ClusterLike; the backend seam; the node client; lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness import backends
from harness.backends.engine import EngineBackend
from harness.cluster import Cluster
from harness.contract import ClusterLike, ManagedCluster
from harness.errors import HarnessError
from harness.nodeclient import NodeClient
from harness.sim import SimCluster

from .fakedocker import FakeDockerClient
from .test_harness_cli import FakeCluster

ROOT = Path(__file__).resolve().parents[1]


def test_docker_cluster_is_cluster_like_and_managed():
    c = Cluster(nodes=3, name="t", client=FakeDockerClient(), timeline=False)
    assert isinstance(c, ClusterLike) and isinstance(c, ManagedCluster)


def test_cli_fake_is_cluster_like_and_managed():
    assert isinstance(FakeCluster([]), ClusterLike) and isinstance(FakeCluster([]), ManagedCluster)


def test_simulator_is_cluster_like():
    assert isinstance(SimCluster(3), ClusterLike)


def test_something_short_of_the_contract_is_not_cluster_like():
    class Half:
        nodes = ["n1"]

        def register(self, node, address, app_name, last_update=None):
            return {}

    assert not isinstance(Half(), ClusterLike)


def test_backend_by_name_or_instance():
    fake = FakeDockerClient()
    chosen = backends.get("docker", fake)
    assert isinstance(chosen, EngineBackend) and chosen.client is fake
    assert isinstance(chosen, backends.Backend)
    assert backends.get(chosen) is chosen
    with pytest.raises(HarnessError, match="unknown backend 'nomad'"):
        backends.get("nomad")


def test_cluster_accepts_a_backend_instance():
    engine = EngineBackend(FakeDockerClient())
    assert Cluster(nodes=1, name="t", backend=engine, timeline=False).backend is engine


def test_node_env_uses_the_topology_address():
    spec = backends.Spec("t", interval=0.5, env={"SD_LOG_LEVEL": "DEBUG"})
    env = spec.node_env("n3", ["n1", "n2"])
    assert env["SD_ADVERTISE"] == "n3:5000" and env["SD_SEEDS"] == "n1:5000,n2:5000"
    assert env["SD_INTERVAL"] == "0.5" and "SD_FANOUT" not in env and env["SD_LOG_LEVEL"] == "DEBUG"


def test_simulator_and_cli_import_neither_docker_nor_requests():
    code = ("import sys, harness.sim, harness.cli, harness.scenarios, harness.netfaults.plan; "
            "print(sorted(m for m in ('docker', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_harness_names_still_import():
    out = subprocess.run([sys.executable, "-c", "from harness import Cluster, Node, gc, Report; print(Cluster)"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    assert "harness.cluster.Cluster" in out.stdout


# ---------------------------------------------------------------------------- node client over real HTTP


class _Node(BaseHTTPRequestHandler):
    """One fake node: answers by path; n-specific behaviour by the port's role in ``ROLES``."""

    ROLES: dict[int, str] = {}

    def log_message(self, *args):
        pass

    def _send(self, status, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        role = self.ROLES[self.server.server_address[1]]
        if self.path == "/registry/digest":
            self._send(200, {"digest": role * 4, "entries": 2})
        elif self.path == "/metrics":
            self._send(200, "# TYPE sd_gossip_rounds_total counter\nsd_gossip_rounds_total 7\n" if role == "ok"
                       else "not { prometheus", "text/plain")
        else:
            self._send(404, {"message": "no such page"})

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        if body.get("address") == "bad":
            self._send(400, {"message": "address must be host:port"})
        else:
            self._send(200, {"ok": True, "echo": body})


@pytest.fixture
def http_nodes():
    servers = {}
    for name, role in (("n1", "ok"), ("n2", "garbled")):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Node)
        _Node.ROLES[server.server_address[1]] = role
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = server
    urls = {n: f"http://127.0.0.1:{s.server_address[1]}" for n, s in servers.items()}
    urls["n3"] = "http://127.0.0.1:9"  # nobody answers
    client = NodeClient(urls.__getitem__, timeout=1.0, read_timeout=0.5)
    yield client
    client.close()
    for s in servers.values():
        s.shutdown()
        s.server_close()


def test_node_client_reads_many_nodes_and_leaves_out_the_silent(http_nodes):
    assert http_nodes.digests(["n1", "n2", "n3"]) == {"n1": ("okokokok", 2), "n2": ("garbledgarbledgarbledgarbled", 2)}
    assert http_nodes.gather(["n1", "n3"], "/nope") == {"n1": None, "n3": None}


def test_node_client_parses_metrics_and_names_a_node_with_garbled_ones(http_nodes):
    assert http_nodes.metrics(["n1", "n3"]) == {"n1": {"sd_gossip_rounds_total": 7.0}}
    with pytest.raises(HarnessError, match="n2 answered /metrics with text the Prometheus parser rejects"):
        http_nodes.metrics(["n2"])


def test_node_client_writes_raise_with_the_nodes_message(http_nodes):
    assert http_nodes.register("n1", "10.0.0.1:80", "web", last_update=5)["echo"] == {
        "address": "10.0.0.1:80", "app_name": "web", "last_update": 5}
    with pytest.raises(HarnessError, match="n1 refused POST /registry/register_instance: HTTP 400: address must be"):
        http_nodes.register("n1", "bad", "web")
    with pytest.raises(HarnessError, match="n3 did not answer POST /registry/deregister_instance"):
        http_nodes.deregister("n3", "10.0.0.1:80")
