"""One contract, three transports: the in-memory network, HTTP and UDP between real servers.

Every test runs against each, so the in-memory network used by the simulation and the
unit tests behaves like the wire: same messages, same failures, bytes counted, same
signed envelope refused the same way. The HTTP nodes run on waitress, the server
``python -m node`` uses; the UDP nodes also serve datagrams on the same port number
(node/udp.py), and send over HTTP what one datagram cannot carry.
"""

from __future__ import annotations

import dataclasses
import os
import random
import socket
import threading

import pytest
import requests
import waitress

from harness.localnode import free_port
from node.app import build_node, create_app
from node.clock import FakeClock
from node.config import TEST
from node.keyring import CLUSTER_HEADER, REASONS, REPLY, REQUEST, Keyring, generate_key, parse_keys
from node.protocol import Entry
from node.transport import SERVER_IDENT, Forbidden, InMemoryNetwork, TransportError
from node.udp import ID_BYTES, KIND_ERROR, KIND_REPLY, KIND_REQUEST, decode, pack, unpack
from node.udp import encode as msgpack_encode
from node.udpserver import UdpServer
from node.wire import Push, dumps, encode


class Memory:
    """Nodes on an InMemoryNetwork."""

    def __init__(self, tmp_path, clock):
        self.net = InMemoryNetwork(random.Random(0))
        self.tmp_path, self.clock = tmp_path, clock

    def node(self, name: str, **overrides):
        address = f"{name}:5000"
        config = dataclasses.replace(TEST, port=5000, advertise=address, db=str(self.tmp_path / f"{name}.db"),
                                     **overrides)
        node = build_node(config, clock=self.clock, transport=None, parallel=False)
        node.transport = self.net.attach(address, node)
        return node

    def unreachable(self) -> str:
        return "nobody:5000"

    def frame(self, message: dict) -> bytes:
        """The bytes a message is signed over on this transport: its JSON."""
        return dumps(message)

    def post(self, node, body: bytes, headers: dict) -> int:
        """Carry raw gossip bytes with ``headers`` to ``node``; return the HTTP status it amounts to."""
        try:
            self.net.carry("forger:1", node.address, body, headers)
        except Forbidden:
            return 403
        return 200

    def close(self):
        pass


class Http:
    """Nodes served over HTTP on 127.0.0.1 by waitress, as ``python -m node`` serves them."""

    def __init__(self, tmp_path, clock):
        self.tmp_path, self.clock = tmp_path, clock
        self.nodes, self.servers, self.threads = [], [], []

    transport = "http"

    def node(self, name: str, **overrides):
        port = free_port()
        config = dataclasses.replace(TEST, port=port, advertise=f"127.0.0.1:{port}", transport=self.transport,
                                     db=str(self.tmp_path / f"{name}.db"), timeout=1.0, **overrides)
        node = build_node(config, clock=self.clock, parallel=False)  # its transport, with the node's keyring
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

    def frame(self, message: dict) -> bytes:
        return dumps(message)

    def post(self, node, body: bytes, headers: dict) -> int:
        """POST raw gossip bytes with ``headers`` to ``node``; return the HTTP status."""
        resp = requests.post(f"http://{node.address}/gossip", data=body, timeout=2,
                             headers={"Content-Type": "application/json", **headers})
        if resp.status_code == 403:
            body = resp.json()
            assert body["error"] == "forbidden" and "refused" in body["message"], body
        return resp.status_code

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


class Udp(Http):
    """Nodes that send gossip in datagrams and serve them on their HTTP port number, as ``python -m node``."""

    transport = "udp"

    def __init__(self, tmp_path, clock):
        super().__init__(tmp_path, clock)
        self.udp: list[UdpServer] = []

    def node(self, name: str, **overrides):
        node = super().node(name, **overrides)
        self.udp.append(UdpServer(node, "127.0.0.1", node.config.port, max_datagram=node.config.max_datagram,
                                  workers=2).start())
        return node

    def frame(self, message: dict) -> bytes:
        """The bytes a datagram's signature covers: a fresh request id, then the msgpack payload."""
        return os.urandom(ID_BYTES) + msgpack_encode(message)

    def post(self, node, body: bytes, headers: dict) -> int:
        """Send raw gossip (``frame``'s bytes) with ``headers`` in one datagram; return the status it amounts to."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2)
            sock.connect(("127.0.0.1", node.config.port))
            sock.send(pack(KIND_REQUEST, body[:ID_BYTES], headers, body[ID_BYTES:]))
            answer = unpack(sock.recv(65535))
        assert answer.id == body[:ID_BYTES]
        if answer.kind == KIND_ERROR:
            error = decode(answer.payload)
            assert error["error"] == "forbidden" and "refused" in error["message"], error
            return error["status"]
        assert answer.kind == KIND_REPLY
        return 200

    def close(self):
        for server in self.udp:
            server.close()
        super().close()


@pytest.fixture(params=[Memory, Http, Udp], ids=["memory", "http", "udp"])
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


@pytest.mark.parametrize("keys", [(), ("signed",)], ids=["open", "signed"])
def test_both_sides_count_the_same_bytes_once(world, keys):
    keys = (KEY,) if keys else ()  # the signature headers count on both sides too
    a, b = world.node("a", gossip_keys=keys), world.node("b", gossip_keys=keys)
    for i in range(30):
        a.register(f"10.0.2.{i}:80", "bulk")
    b.register("10.0.3.1:80", "on-b")

    results = [a.exchange(b.address) for _ in range(3)]  # the first moves entries, the others are at rest

    assert all(r.ok for r in results)
    assert a.stats.bytes_sent == sum(r.bytes_sent for r in results) == b.stats.bytes_received
    assert a.stats.bytes_received == sum(r.bytes_received for r in results) == b.stats.bytes_sent
    assert results[1].bytes_sent == results[2].bytes_sent < results[0].bytes_sent


# -- authentication: the same envelope, refused the same way ---------------------------------------

KEY, OTHER_KEY = generate_key(), generate_key()
EVIL = "10.66.0.1:80"


def push_of_evil(world, world_node) -> bytes:
    """The encoded Push of an entry nobody registered, as a forger would send it."""
    now = world_node.clock.now()
    entry = Entry(EVIL, "evil", 1, 1, "forger:1", False, now)
    return world.frame(encode(Push("forger:1", [entry], []), now))


def _unsigned(body):
    return body, {CLUSTER_HEADER: "default"}


def _other_key(body):
    return body, Keyring(parse_keys(OTHER_KEY)).seal(body, REQUEST)


def _tampered(body):
    headers = Keyring(parse_keys(KEY)).seal(body, REQUEST)
    return body.replace(b"evil", b"evi1"), headers


def _other_cluster(body):
    return body, Keyring(parse_keys(KEY), "other").seal(body, REQUEST)


def _reply_as_request(body):
    return body, Keyring(parse_keys(KEY)).seal(body, REPLY)


@pytest.mark.parametrize("forge, reason", [
    (_unsigned, "unsigned"), (_other_key, "bad_signature"), (_tampered, "bad_signature"),
    (_other_cluster, "wrong_cluster"), (_reply_as_request, "bad_signature"),
], ids=["unsigned", "other-key", "tampered", "other-cluster", "reply-as-request"])
def test_forged_request_is_refused_counted_and_not_merged(world, forge, reason):
    b = world.node("b", gossip_keys=(KEY,))
    body, headers = forge(push_of_evil(world, b))

    assert world.post(b, body, headers) == 403

    assert b.store.get(EVIL, b.clock.now()) is None
    assert b.stats.rejected == {**dict.fromkeys(REASONS, 0), reason: 1}
    assert b.stats.merges_applied == 0
    # The same message signed as it should be passes: what was refused was the envelope.
    assert world.post(b, *_signed(push_of_evil(world, b))) == 200
    assert b.store.get(EVIL, b.clock.now()) is not None


def _signed(body):
    return body, Keyring(parse_keys(KEY)).seal(body, REQUEST)


def test_open_node_refuses_only_another_cluster(world):
    b = world.node("b")
    assert world.post(b, *_other_cluster(push_of_evil(world, b))) == 403
    assert b.store.get(EVIL, b.clock.now()) is None
    assert world.post(b, *_unsigned(push_of_evil(world, b))) == 200
    assert b.stats.rejected["wrong_cluster"] == 1


def test_keyed_pair_converges_and_a_stranger_is_refused(world):
    a, b = world.node("a", gossip_keys=(KEY,)), world.node("b", gossip_keys=(KEY,))
    stranger = world.node("c", gossip_keys=(OTHER_KEY,))
    a.register("10.0.0.1:80", "on-a")
    stranger.register("10.0.0.3:80", "on-stranger")

    assert a.exchange(b.address).ok
    refused = stranger.exchange(b.address)

    assert b.listing().keys() == {"10.0.0.1:80"} == a.listing().keys() - {a.address}
    assert not refused.ok and "403" in refused.error
    assert b.stats.rejected["bad_signature"] == 1 and stranger.stats.exchanges_failed == 1
    with pytest.raises(Forbidden):
        stranger.transport.send(b.address, encode(Push(stranger.address, [], []), 0.0), 1.0)


@pytest.mark.parametrize("responder_keys, reason", [
    ((OTHER_KEY, KEY), "bad_signature"),  # accepts our key, signs its replies with another
    ((), "unsigned"),                     # an open node: accepts anything, signs nothing
], ids=["wrong-key", "unsigned"])
def test_forged_reply_fails_the_exchange_and_nothing_is_merged(world, responder_keys, reason):
    a = world.node("a", gossip_keys=(KEY,))
    b = world.node("b", gossip_keys=responder_keys)
    b.register("10.0.0.2:80", "injected")

    result = a.exchange(b.address)

    assert not result.ok and reason in result.error
    assert a.stats.exchanges_failed == 1 and a.stats.rejected[reason] == 1
    assert a.store.get("10.0.0.2:80", a.clock.now()) is None
    assert a.store.get(b.address, a.clock.now()) is None



def test_a_delay_past_the_timeout_loses_the_reply_but_the_request_is_handled(tmp_path):
    world = Memory(tmp_path, FakeClock())
    a, b = world.node("a"), world.node("b")
    a.register("10.0.0.1:80", "web")
    world.net.set_delay(a.address, 0.15)   # TEST's timeout is 0.2 s: one delayed leg fits in it
    assert a.exchange(b.address).ok
    world.net.set_delay(b.address, 0.15)   # a delayed request and a delayed reply do not
    a.register("10.0.0.2:80", "web")
    before = b.stats.bytes_received
    result = a.exchange(b.address)
    assert not result.ok and "timeout" in result.error
    assert b.stats.bytes_received > before  # b handled the request all the same
    assert "10.0.0.2:80" not in b.listing()
    world.net.heal()                        # heal removes delays
    assert a.exchange(b.address).ok and "10.0.0.2:80" in b.listing()
