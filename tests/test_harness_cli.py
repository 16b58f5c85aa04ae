"""The command line against a fake cluster backend, without Docker."""

import json

import pytest
from click.testing import CliRunner

from harness import cli
from harness.convergence import Report
from harness.errors import ClusterNotFound, DockerUnavailable, InvalidPartition, NodeNotFound


class FakeCluster:
    """A ManagedCluster that records calls; knows nodes n1..n3."""

    nodes = ["n1", "n2", "n3"]

    def __init__(self, calls, **kwargs):
        self.calls, self.kwargs = calls, kwargs

    def _record(self, *call):
        self.calls.append(call)

    def up(self):
        self._record("up", self.kwargs)

    def down(self):
        self._record("down")
        return {"containers": 3, "volumes": 3, "networks": 1}

    def url(self, node):
        return f"http://127.0.0.1:{40000 + int(node[1:])}"

    def status(self):
        return {"cluster": "t", "converged": False, "nodes": [
            {"name": n, "url": self.url(n), "state": "running", "entries": 3, "digest": "d" * 16, "status": "ok"}
            for n in self.nodes]}

    def register(self, node, address, app_name, last_update=None):
        self._record("register", node, address, app_name)
        return {"status": "registered"}

    def deregister(self, node, address):
        self._record("deregister", node, address)
        return {"status": "deregistered"}

    def views(self, nodes=None):
        return {n: {} for n in nodes or self.nodes}

    def digests(self, nodes=None):
        return {n: ("d" * 16, 3) for n in nodes or self.nodes}

    def partition(self, groups):
        self._record("partition", groups)
        if any(n not in self.nodes for g in groups for n in g):
            raise NodeNotFound("no node 'n9' in cluster 't' (nodes: n1, n2, n3)")
        return groups + [["n3"]]

    def isolate(self, node):
        self._record("isolate", node)

    def partition_one_way(self, src, dst):
        self._record("one_way", src, dst)

    def heal(self):
        self._record("heal")

    def loss(self, node, percent):
        self._record("loss", node, percent)

    def delay(self, node, ms):
        self._record("delay", node, ms)

    def skew(self, node, seconds):
        self._record("skew", node, seconds)

    def kill(self, node):
        self._record("kill", node)

    def stop(self, node):
        self._record("stop", node)

    def start(self, node):
        self._record("start", node)

    def restart(self, node):
        self._record("restart", node)

    def pause(self, node):
        self._record("pause", node)

    def unpause(self, node):
        self._record("unpause", node)

    def wait_converged(self, timeout=30.0, nodes=None, expect_present=(), expect_absent=()):
        self._record("wait", timeout)
        return Report(digests=self.digests())

    def settle(self, seconds):
        self._record("settle", seconds)


@pytest.fixture
def backend():
    calls = []
    attached = []

    def attach(name):
        if name == "missing":
            raise ClusterNotFound("no cluster named 'missing' (start one with `up --name missing`)")
        if name == "nodocker":
            raise DockerUnavailable("cannot reach the Docker daemon at tcp://x: [Errno 111] Connection refused")
        attached.append(name)
        return FakeCluster(calls)

    return {"create": lambda **kw: FakeCluster(calls, **kw), "attach": attach,
            "gc": lambda cluster=None: {"containers": 1, "volumes": 2, "networks": 3, "cluster": cluster},
            "calls": calls, "attached": attached}


def run(backend, *args):
    return CliRunner().invoke(cli.main, list(args), obj=backend)


def test_parse_groups():
    assert cli.parse_groups(("n1,n2", "n3")) == [["n1", "n2"], ["n3"]]
    with pytest.raises(InvalidPartition):
        cli.parse_groups(("n1,,n2",))


def test_up_passes_options_and_prints_urls(backend):
    result = run(backend, "up", "--nodes", "3", "--name", "demo", "--interval", "0.5", "--fanout", "2")
    assert result.exit_code == 0, result.output
    (_, kwargs), = backend["calls"]
    assert kwargs["name"] == "demo" and kwargs["nodes"] == 3 and kwargs["interval"] == 0.5 and kwargs["fanout"] == 2
    assert "http://127.0.0.1:40001" in result.output


def test_status_json_shape(backend):
    result = run(backend, "status", "--json", "--name", "x")
    data = json.loads(result.output)
    assert data["converged"] is False
    assert {"name", "url", "entries", "digest", "status"} <= set(data["nodes"][0])
    assert backend["attached"] == ["x"]


def test_partition_groups_are_split_on_commas(backend):
    result = run(backend, "partition", "n1,n2", "n3")
    assert result.exit_code == 0, result.output
    assert ("partition", [["n1", "n2"], ["n3"]]) in backend["calls"]
    assert backend["attached"] == ["default"]


def test_negative_skew_is_an_argument_not_an_option(backend):
    result = run(backend, "skew", "n2", "-30")
    assert result.exit_code == 0, result.output
    assert ("skew", "n2", -30.0) in backend["calls"]


@pytest.mark.parametrize("action", ["kill", "stop", "start", "restart", "pause", "unpause"])
def test_process_commands_reach_the_cluster(backend, action):
    assert run(backend, action, "n2").exit_code == 0
    assert (action, "n2") in backend["calls"]


@pytest.mark.parametrize("args,call", [
    (["loss", "n1", "30"], ("loss", "n1", 30.0)),
    (["delay", "n3", "50"], ("delay", "n3", 50.0)),
    (["one-way", "n1", "n2"], ("one_way", "n1", "n2")),
    (["isolate", "n2"], ("isolate", "n2")),
    (["heal"], ("heal",)),
    (["wait", "--timeout", "5"], ("wait", 5.0)),
])
def test_fault_and_wait_commands_reach_the_cluster(backend, args, call):
    result = run(backend, *args)
    assert result.exit_code == 0, result.output
    assert call in backend["calls"]


@pytest.mark.parametrize("args,message", [
    (["status", "--name", "missing"], "error: no cluster named 'missing'"),
    (["heal", "--name", "nodocker"], "error: cannot reach the Docker daemon"),
    (["partition", "n1", "n9"], "error: no node 'n9'"),
])
def test_errors_are_one_line_without_traceback(backend, args, message):
    result = CliRunner().invoke(cli.main, args, obj=backend)
    assert result.exit_code == 1
    assert result.output.startswith(message)
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_gc_all_clusters(backend):
    result = run(backend, "gc", "--all")
    assert result.exit_code == 0
    assert "removed 1 containers, 2 volumes, 3 networks" in result.output
