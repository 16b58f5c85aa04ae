"""One contract, two transports: the in-memory network and HTTP between real servers.

Every test runs against both, so the in-memory network used by the simulation and the
unit tests behaves like the wire: same messages, same failures, bytes counted. The HTTP
nodes run on waitress, the server ``python -m node`` uses.
"""

from __future__ import annotations

import dataclasses
import random
import threading

import pytest
import waitress

from harness.localnode import free_port
from node.app import build_node, create_app
from node.clock import FakeClock
from node.config import TEST
from node.transport import SERVER_IDENT, HttpTransport, InMemoryNetwork, TransportError


class Memory:
    """Nodes on an InMemoryNetwork."""

    def __init__(self, tmp_path, clock):
        self.net = InMemoryNetwork(random.Random(0))
        self.tmp_path, self.clock = tmp_path, clock

    def node(self, name: str):
        address = f"{name}:5000"
        config = dataclasses.replace(TEST, port=5000, advertise=address, db=str(self.tmp_path / f"{name}.db"))
        node = build_node(config, clock=self.clock, transport=None, parallel=False)
        node.transport = self.net.attach(address, node)
        return node

    def unreachable(self) -> str:
        return "nobody:5000"

    def close(self):
        pass


class Http:
    """Nodes served over HTTP on 127.0.0.1 by waitress, as ``python -m node`` serves them."""

    def __init__(self, tmp_path, clock):
        self.tmp_path, self.clock = tmp_path, clock
        self.nodes, self.servers, self.threads = [], [], []

    def node(self, name: str):
        port = free_port()
        config = dataclasses.replace(TEST, port=port, advertise=f"127.0.0.1:{port}",
                                     db=str(self.tmp_path / f"{name}.db"), timeout=1.0)
        node = build_node(config, clock=self.clock, transport=HttpTransport(), parallel=False)
        server = waitress.create_server(create_app(node=node), host="127.0.0.1", port=port, threads=2,
                                        ident=SERVER_IDENT)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        self.nodes.append(node)
        self.servers.append(server)
        self.threads.append(thread)
        return node

    def unreachable(self) -> str:
        return f"127.0.0.1:{free_port()}"  # nothing listens there

    def close(self):
        for n in self.nodes:  # kept-alive connections first, so the servers' loops run dry
            n.transport.close()
        for s in self.servers:  # closed by its own loop: closing from here races its select()
            s.trigger.pull_trigger(s.close)
        for s, t in zip(self.servers, self.threads, strict=True):
            t.join(5)
            s.task_dispatcher.shutdown()
        for n in self.nodes:
            n.store.close()


@pytest.fixture(params=[Memory, Http], ids=["memory", "http"])
def world(request, tmp_path):
    w = request.param(tmp_path, FakeClock())
    yield w
    w.close()


def test_one_exchange_makes_both_sides_equal(world):
    a, b = world.node("a"), world.node("b")
    a.register("10.0.0.1:80", "only-on-a")
    b.register("10.0.0.2:80", "only-on-b")
    b.deregister("10.0.0.3:80")
    result = a.exchange(b.address)
    assert result.ok, result.error
    assert set(a.store.live(a.clock.now())) == set(b.store.live(b.clock.now()))
    assert a.listing().keys() == b.listing().keys() == {"10.0.0.1:80", "10.0.0.2:80"}
    assert result.sent == 1 and result.received == 2
    assert result.bytes_sent > 0 and result.bytes_received > 0


def test_converged_pair_exchanges_only_a_summary(world):
    a, b = world.node("a"), world.node("b")
    for i in range(40):
        a.register(f"10.0.1.{i}:80", "bulk")
    assert a.exchange(b.address).ok
    first = a.exchange(b.address)  # nothing left to send
    assert first.ok and first.sent == 0 and first.received == 0
    busy = b.exchange(a.address)
    assert busy.ok and busy.bytes_sent < 600, busy  # a few bucket hashes, not 40 entries


def test_unreachable_peer_is_a_transport_error_and_counted(world):
    a = world.node("a")
    result = a.exchange(world.unreachable())
    assert not result.ok and result.error
    assert a.stats.exchanges_failed == 1
    with pytest.raises(TransportError):
        a.transport.send(world.unreachable(), {"type": "sum", "from": a.address, "buckets": ["0"]}, 0.5)


def test_malformed_message_is_refused_not_crashing(world):
    a, b = world.node("a"), world.node("b")
    if isinstance(world, Http):
        with pytest.raises(TransportError, match="400"):
            a.transport.send(b.address, {"type": "sum", "buckets": "nope"}, 1.0)
    else:
        with pytest.raises(ValueError):
            a.transport.send(b.address, {"type": "sum", "buckets": "nope"}, 1.0)
    assert a.exchange(b.address).ok  # the peer still serves


def test_lease_age_survives_the_wire(world):
    a, b = world.node("a"), world.node("b")
    a.register("10.0.0.9:80", "aging")
    a.clock.advance(4.0)  # shared fake clock: 4 s of a's 6 s lease are gone
    assert a.exchange(b.address).ok
    entry = b.store.get("10.0.0.9:80", b.clock.now())
    assert entry.age(b.clock.now()) == pytest.approx(4.0, abs=0.01)


def test_both_sides_count_the_same_bytes_once(world):
    a, b = world.node("a"), world.node("b")
    for i in range(30):
        a.register(f"10.0.2.{i}:80", "bulk")
    b.register("10.0.3.1:80", "on-b")

    results = [a.exchange(b.address) for _ in range(3)]  # the first moves entries, the others are at rest

    assert all(r.ok for r in results)
    assert a.stats.bytes_sent == sum(r.bytes_sent for r in results) == b.stats.bytes_received
    assert a.stats.bytes_received == sum(r.bytes_received for r in results) == b.stats.bytes_sent
    assert results[1].bytes_sent == results[2].bytes_sent < results[0].bytes_sent
