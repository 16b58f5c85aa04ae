"""The command line against a fake cluster backend, without Docker."""

import json

import pytest
from click.testing import CliRunner

from harness import cli
from harness.errors import ClusterNotFound, DockerUnavailable, InvalidPartition, NodeNotFound


class FakeCluster:
    """Records calls; knows nodes n1..n3."""

    nodes = ["n1", "n2", "n3"]

    def __init__(self, calls, **kwargs):
        self.calls, self.kwargs = calls, kwargs

    def up(self):
        self.calls.append(("up", self.kwargs))

    def url(self, node):
        return f"http://127.0.0.1:{40000 + int(node[1:])}"

    def status(self):
        return {"cluster": "t", "converged": False, "nodes": [
            {"name": n, "url": self.url(n), "state": "running", "entries": 3, "digest": "d" * 16, "status": "ok"}
            for n in self.nodes]}

    def partition(self, groups):
        self.calls.append(("partition", groups))
        if any(n not in self.nodes for g in groups for n in g):
            raise NodeNotFound("no node 'n9' in cluster 't' (nodes: n1, n2, n3)")
        return groups + [["n3"]]

    def skew(self, node, seconds):
        self.calls.append(("skew", node, seconds))

    def kill(self, node):
        self.calls.append(("kill", node))


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


def test_process_commands_reach_the_cluster(backend):
    assert run(backend, "kill", "n2").exit_code == 0
    assert ("kill", "n2") in backend["calls"]


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
