"""Every exchange has one deadline: a peer that drips its reply, or answers late, costs at most ``timeout``."""

from __future__ import annotations

import dataclasses
import random
import socket
import threading
import time

import pytest

from node.app import build_node, create_app
from node.config import TEST
from node.transport import HttpTransport, InMemoryNetwork, Reply

TIMEOUT = 0.6
SLACK = 0.4


@pytest.fixture
def dripper():
    """A TCP server that accepts, then sends one byte of an HTTP reply every 0.2 s, forever."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip(conn: socket.socket) -> None:
        with conn:
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(bytes([b]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    server.close()


def timed(fn):
    """Run ``fn()`` in a thread; return (its result, seconds taken), or fail if it is still running after 5 s."""
    out: list = []
    started = time.monotonic()
    worker = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    worker.start()
    worker.join(5.0)
    assert out, "still running after 5 s"
    return out[0], time.monotonic() - started


def http_node(tmp_path, address="127.0.0.1:1", **overrides):
    config = dataclasses.replace(TEST, port=1, advertise=address, db=str(tmp_path / "n.db"), timeout=TIMEOUT,
                                 **overrides).validate()
    return build_node(config, transport=HttpTransport(), rng=random.Random(0), parallel=True)


def test_an_exchange_with_a_dripping_peer_ends_at_its_deadline(tmp_path, dripper):
    node = http_node(tmp_path)
    try:
        result, took = timed(lambda: node.exchange(dripper))
    finally:
        node.stop()
        node.store.close()
    assert not result.ok
    assert took < TIMEOUT + SLACK, took
    assert node.stats.exchanges_failed == 1


class Mixed:
    """Sends to the dripping peer over HTTP and to everyone else over an in-memory network."""

    def __init__(self, http: HttpTransport, memory, slow: str) -> None:
        self.http, self.memory, self.slow = http, memory, slow

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        return (self.http if peer == self.slow else self.memory).send(peer, message, timeout)


def test_a_round_with_a_dripping_peer_finishes_on_time_and_converges_with_the_healthy_one(tmp_path, dripper):
    net = InMemoryNetwork(random.Random(0))
    a = http_node(tmp_path, "a:1")
    b_config = dataclasses.replace(TEST, port=2, advertise="b:2", db=str(tmp_path / "b.db")).validate()
    b = build_node(b_config, transport=None, rng=random.Random(1), parallel=False)
    a.transport = Mixed(HttpTransport(), net.attach("a:1", a), dripper)
    b.transport = net.attach("b:2", b)
    try:
        b.register("10.0.0.9:80", "web")
        results, took = timed(lambda: a.run_round([dripper, "b:2"]))
    finally:
        for n in (a, b):
            n.stop()
            n.store.close()
    assert took < TIMEOUT + SLACK, took
    assert {r.peer: r.ok for r in results} == {dripper: False, "b:2": True}
    assert "10.0.0.9:80" in a.listing()


class Late:
    """Delivers over the in-memory network, but the push's reply comes ``delay`` seconds (fake clock) late."""

    def __init__(self, inner, clock, delay: float) -> None:
        self.inner, self.clock, self.delay = inner, clock, delay

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        reply = self.inner.send(peer, message, timeout)
        if "entries" in message:  # the Push: its reply carries entries, dated by their ages on arrival
            self.clock.advance(self.delay)
        return reply


def test_a_reply_that_comes_after_the_deadline_is_dropped_unmerged(make_node, clock):
    a, b = make_node("a:1"), make_node("b:2")
    b.register("10.0.0.9:80", "web")
    a.register("10.0.0.1:80", "web")  # a differs from b: the exchange gets to the Push
    a.transport = Late(a.transport, clock, a.config.timeout * 3)

    result = a.exchange("b:2")

    assert not result.ok and "deadline" in (result.error or "")
    assert "10.0.0.9:80" not in a.listing()
    assert a.stats.late_replies == 1
    assert b"sd_gossip_replies_late_total 1.0" in create_app(node=a).test_client().get("/metrics").data


def test_a_reply_within_the_deadline_is_merged(make_node, clock):
    a, b = make_node("a:1"), make_node("b:2")
    b.register("10.0.0.9:80", "web")
    a.register("10.0.0.1:80", "web")
    a.transport = Late(a.transport, clock, a.config.timeout / 2)

    assert a.exchange("b:2").ok
    assert "10.0.0.9:80" in a.listing()
