"""The dashboard without a browser: its state, its controls' errors, its event stream, and its one poller."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter

import pytest
import waitress

from harness.dashboard.hub import Hub, theory_curve
from harness.dashboard.server import create_app, stream
from harness.dashboard.sources import ClusterSource, SimSource
from harness.nodeclient import NodeClient
from node.app import create_app as node_app


@pytest.fixture(autouse=True)
def _logger_levels():
    """The dashboard command quiets the node and werkzeug loggers of its process; restore them for later tests."""
    loggers = [logging.getLogger(name) for name in ("node", "werkzeug")]
    levels = [lg.level for lg in loggers]
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


@pytest.fixture
def sim_hub():
    """A hub over a five-node simulation, not stepping (tests step it)."""
    hub = Hub(SimSource(5))
    hub.changed()
    yield hub
    hub.stop()


def state(hub: Hub) -> dict:
    return json.loads(hub.text)


def test_the_state_draws_every_node_in_one_digest_group(sim_hub):
    s = state(sim_hub)
    assert [n["name"] for n in s["nodes"]] == ["n1", "n2", "n3", "n4", "n5"]
    assert s["converged"] and {n["group"] for n in s["nodes"]} == {0}
    assert s["partition"] == [["n1", "n2", "n3", "n4", "n5"]]


def test_a_registration_splits_the_colours_until_gossip_spreads_it_then_the_timeline_says_so(sim_hub):
    sim_hub.act("register", {"node": "n2", "address": "10.0.0.1:80", "app_name": "web"})
    s = state(sim_hub)
    assert s["digests"] == 2
    assert [n["name"] for n in s["nodes"] if n["holds"]] == ["n2"]
    sim_hub.source.sim.wait_converged(timeout=10)
    sim_hub.changed()
    s = state(sim_hub)
    assert s["converged"] and all(n["holds"] for n in s["nodes"])
    assert [e["kind"] for e in s["events"]] == ["register", "diverged", "converged"]
    track = s["track"]
    assert track["holders"] == 5 and list(track["since"])[0] == "n2" and track["since"]["n2"] == 0


def test_a_partition_is_drawn_as_its_groups_and_heal_draws_one(sim_hub):
    sim_hub.act("partition", {"groups": [["n1", "n2"]]})
    assert state(sim_hub)["partition"] == [["n1", "n2"], ["n3", "n4", "n5"]]
    sim_hub.act("one_way", {"src": "n1", "dst": "n3"})
    nodes = {n["name"]: n for n in state(sim_hub)["nodes"]}
    assert nodes["n1"]["cuts_out"] == ["n3"] and nodes["n3"]["cuts_in"] == ["n1"]
    sim_hub.act("heal", {})
    assert state(sim_hub)["partition"] == [["n1", "n2", "n3", "n4", "n5"]]


@pytest.mark.parametrize("body, word", [
    ({"op": "explode"}, "op must be one of"),
    ({"op": "kill", "node": "n9"}, "node must name a node"),
    ({"op": "loss", "node": "n1", "percent": 140}, "percent must be a number in 0..100"),
    ({"op": "partition", "groups": "n1,n2"}, "groups must be a list"),
    ({"op": "partition", "groups": [["n1"], ["n1"]]}, "n1"),
    ({"op": "register", "node": "n1"}, "address is required"),
    ({"op": "one_way", "src": "n1", "dst": "n1"}, "two different nodes"),
])
def test_a_bad_control_is_a_400_saying_what_and_changes_nothing(sim_hub, body, word):
    before = [n["state"] for n in state(sim_hub)["nodes"]]
    resp = create_app(sim_hub).test_client().post("/api/action", json=body)
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "bad_request" and word in resp.get_json()["message"]
    s = state(sim_hub)
    assert [n["state"] for n in s["nodes"]] == before and len(s["partition"]) == 1 and s["events"] == []


def test_the_event_stream_sends_the_state_at_once_and_again_on_every_change(sim_hub):
    events = stream(sim_hub, keepalive=0.05)
    first = next(events)
    assert first.startswith("id: ") and json.loads(first.split("data: ", 1)[1])["converged"]
    assert next(events) == ": keepalive\n\n"
    sim_hub.act("kill", {"node": "n4"})
    changed = json.loads(next(events).split("data: ", 1)[1])
    assert {n["name"]: n["state"] for n in changed["nodes"]}["n4"] == "exited"


def test_the_theory_curve_rises_from_about_one_node_to_all():
    t = theory_curve(20, 3, 0.2)
    fractions = [f for _, f in t["curve"]]
    assert fractions == sorted(fractions) and fractions[0] < 0.1 and fractions[-1] > 0.999
    assert t["push_pull_mean_s"] == pytest.approx(0.2 * 2.58, abs=0.1)


# -- a running cluster: one watch per node, however many pages ------------------------------------


class Counting:
    """WSGI middleware counting requests by path."""

    def __init__(self, app) -> None:
        self.app, self.paths = app, Counter()

    def __call__(self, environ, start_response):
        self.paths[environ["PATH_INFO"]] += 1
        return self.app(environ, start_response)


class ServedCluster:
    """What ClusterSource reads of a Cluster, over nodes served by waitress on loopback."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.urls, self.name, self.fanout, self.interval, self.backend = urls, "served", 3, 0.2, object()
        self.http = NodeClient(self.url)

    nodes = property(lambda self: list(self.urls))

    def url(self, node: str) -> str:
        return self.urls[node]

    def states(self) -> dict[str, str]:
        return dict.fromkeys(self.urls, "running")

    def metrics(self, nodes):
        return self.http.metrics(nodes)

    def register(self, node: str, address: str, app_name: str) -> dict:
        return self.http.register(node, address, app_name)


@pytest.fixture
def served_cluster(make_node):
    """Three in-memory nodes, each served by waitress on a free port; yields (cluster, request counters)."""
    servers, counters, urls = [], {}, {}
    for k in (1, 2, 3):
        counting = Counting(node_app(node=make_node(f"n{k}:500{k}")))
        srv = waitress.create_server(counting, host="127.0.0.1", port=0, threads=8)
        thread = threading.Thread(target=srv.run, daemon=True)
        thread.start()
        servers.append((srv, thread))
        urls[f"n{k}"], counters[f"n{k}"] = f"http://127.0.0.1:{srv.effective_port}", counting.paths
    yield ServedCluster(urls), counters
    for srv, thread in servers:
        channels = list(srv._map.values())
        srv._map.clear()  # the server's loop ends once its socket map is empty, then the sockets close
        thread.join(5)
        for channel in channels:
            channel.close()
        srv.task_dispatcher.shutdown()


def test_the_poller_watches_each_node_once_however_many_pages_are_open(served_cluster):
    cluster, counters = served_cluster
    hub = Hub(ClusterSource(cluster, every=30.0, wait=5.0)).start()
    try:
        pages = [stream(hub, keepalive=0.1) for _ in range(5)]
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # five pages reading the stream
            for page in pages:
                next(page)
        t0 = time.monotonic()
        hub.act("register", {"node": "n2", "address": "10.0.0.9:80", "app_name": "web"})
        while not {n["name"] for n in state(hub)["nodes"] if n["holds"]} == {"n2"}:
            assert time.monotonic() - t0 < 3, state(hub)
            time.sleep(0.02)
        shown = time.monotonic() - t0
    finally:
        hub.stop()
    # Each node got its first listing and then held watches: a handful, not one per page per tick.
    for name, paths in counters.items():
        assert paths["/registry/list"] <= 3, (name, paths)
        assert paths["/metrics"] <= 2, (name, paths)
    assert shown < 2  # the write woke n2's watch, long before the next poll (every 30 s)


# -- the command ----------------------------------------------------------------------------------


def test_the_command_names_a_cluster_it_cannot_find_in_one_line():
    from click.testing import CliRunner

    from harness import cli
    from harness.errors import ClusterNotFound

    def attach(name):
        raise ClusterNotFound(f"no cluster named {name!r} (start one with `up --name {name}`)")

    result = CliRunner().invoke(cli.main, ["dashboard", "--name", "missing"], obj={"attach": attach})
    assert result.exit_code == 1
    assert "no cluster named 'missing'" in result.output


def test_the_command_says_when_its_port_is_taken():
    import socket

    from click.testing import CliRunner

    from harness import cli

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli.main, ["dashboard", "--backend", "sim", "--nodes", "3", "--port", str(port)])
    assert result.exit_code != 0
    assert str(port) in result.output  # werkzeug says the port is in use
