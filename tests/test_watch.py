"""GET /registry/list as a watch: ?index=N&wait=D answers on a change, holds otherwise, and is bounded."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from node import watch
from node.__main__ import make_server
from node.transport import HttpTransport
from tests.test_api import assert_json_error, register

INDEX = watch.INDEX_HEADER


def index_of(resp) -> int:
    return int(resp.headers[INDEX])


def timed_get(client, path):
    t0 = time.monotonic()
    resp = client.get(path)
    return resp, time.monotonic() - t0


def test_every_listing_carries_the_index_and_a_write_moves_it(client):
    first = client.get("/registry/list")
    filtered = client.get("/registry/list?app_name=web")
    assert index_of(first) == index_of(filtered)
    register(client, "a:1")
    assert index_of(client.get("/registry/list")) > index_of(first)


def test_a_stale_index_answers_at_once_with_the_current_listing(client):
    stale = index_of(client.get("/registry/list"))
    register(client, "a:1")
    resp, took = timed_get(client, f"/registry/list?index={stale}&wait=10s")
    assert resp.status_code == 200
    assert list(resp.get_json()) == ["a:1"]
    assert index_of(resp) != stale
    assert took < 2


def test_a_current_index_holds_until_a_write_then_answers_with_it(client, node):
    current = index_of(client.get("/registry/list"))
    timer = threading.Timer(0.3, node.register, ("b:2", "db", None))
    timer.start()
    try:
        resp, took = timed_get(client, f"/registry/list?index={current}&wait=10s")
    finally:
        timer.join()
    assert resp.status_code == 200
    assert resp.get_json()["b:2"]["app_name"] == "db"
    assert index_of(resp) > current
    assert 0.25 < took < 5


def test_a_watch_that_sees_no_write_answers_after_wait_with_the_same_index(client):
    register(client, "a:1")
    current = index_of(client.get("/registry/list"))
    resp, took = timed_get(client, f"/registry/list?index={current}&wait=300ms")
    assert resp.status_code == 200
    assert index_of(resp) == current
    assert list(resp.get_json()) == ["a:1"]  # the body is the listing, shaped as ever
    assert 0.25 < took < 3


@pytest.mark.parametrize("query, word", [
    ("index=1&wait=soon", "wait"), ("index=1&wait=-1s", "wait"), ("index=1&wait=5x", "wait"),
    ("index=-1", "index"), ("index=abc&wait=1s", "index"), ("index=" + "9" * 30, "index"),
])
def test_a_bad_index_or_wait_is_a_400_saying_which(client, query, word):
    resp = client.get(f"/registry/list?{query}")
    assert_json_error(resp, 400)
    assert word in resp.get_json()["message"]


def test_wait_takes_consul_durations_and_is_capped():
    assert watch.parse_wait("500ms") == 0.5
    assert watch.parse_wait("30s") == 30
    assert watch.parse_wait("1m") == 60
    assert watch.parse_wait("2") == 2
    assert watch.parse_wait("1h") == watch.MAX_WAIT


def hold(url: str, index: int, results: list, wait: str = "10s") -> threading.Thread:
    """Start a watch on ``url`` in a thread; its response lands in ``results``."""
    def run():
        results.append(requests.get(f"{url}/registry/list", params={"index": index, "wait": wait}, timeout=20))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


@pytest.fixture
def served(make_node, monkeypatch):
    """A node with 4 worker threads served by waitress on a free port; yields (node, its Watches, base url)."""
    made: list[watch.Watches] = []
    real = watch.Watches.for_threads
    monkeypatch.setattr(watch.Watches, "for_threads", lambda threads: made.append(real(threads)) or made[-1])
    node = make_node("n1:5001", threads=4)
    srv = make_server(node, "127.0.0.1", 0)
    [watches] = made
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        yield node, watches, f"http://127.0.0.1:{srv.effective_port}"
    finally:
        channels = list(srv._map.values())
        srv._map.clear()  # the server's loop ends once its socket map is empty ...
        thread.join(5)
        for channel in channels:  # ... and only then are the sockets closed under it
            channel.close()
        srv.task_dispatcher.shutdown()


def test_watches_beyond_half_the_threads_are_refused_and_the_node_keeps_serving(served, make_node):
    node, watches, url = served
    limit = 2  # threads=4
    current = index_of(requests.get(f"{url}/registry/list", timeout=5))
    results: list = []
    holders = [hold(url, current, results) for _ in range(limit)]
    wait_for(lambda: watches.held == limit)

    refused = requests.get(f"{url}/registry/list", params={"index": current, "wait": "10s"}, timeout=5)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"] == "too_many_watches"
    # With every watch slot held: health, plain reads, writes and gossip are served at once.
    t0 = time.monotonic()
    assert requests.get(f"{url}/health", timeout=2).status_code == 200
    assert requests.get(f"{url}/registry/list", timeout=2).status_code == 200
    peer = make_node("n2:5002", threads=4)
    peer.transport = HttpTransport(keyring=peer.keyring)
    [exchange] = peer.run_round([url.removeprefix("http://")])
    assert exchange.ok, exchange
    assert time.monotonic() - t0 < 3
    # The gossip exchange wrote to the node: the held watches answer with the new index.
    for t in holders:
        t.join(10)
    assert [r.status_code for r in results] == [200] * limit
    assert all(index_of(r) > current for r in results)
    assert watches.held == 0


def test_the_limit_is_half_the_threads_and_at_least_one():
    assert watch.Watches.for_threads(8).limit == 4
    assert watch.Watches.for_threads(1).limit == 1
