"""Gossip datagrams: the HTTP fallback for big messages, reply matching, loss, the envelope, real nodes.

The contract every transport keeps (tests/test_transport.py) runs against UDP too; these
are the behaviours only datagrams have.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import msgpack
import pytest
import requests
import waitress
from prometheus_client.parser import text_string_to_metric_families

from harness.localnode import cluster_of, free_port, stop_all
from harness.wait import wait_until
from node.app import build_node, create_app
from node.clock import Clock, FakeClock
from node.config import TEST
from node.keyring import REQUEST, Keyring, generate_key, parse_keys
from node.transport import SERVER_IDENT, TransportError
from node.udp import (
    ID_BYTES,
    KIND_ERROR,
    KIND_REPLY,
    KIND_REQUEST,
    KIND_TOO_BIG,
    decode,
    encode,
    pack,
    unpack,
)
from node.udpclient import UdpTransport
from node.udpserver import UdpServer
from node.wire import Summary
from node.wire import encode as wire_encode

KEY = generate_key()


@pytest.fixture
def make(tmp_path):
    """Build nodes served over UDP (and HTTP, for the fallback) on 127.0.0.1; close them all after."""
    made = []

    def node(name: str, serve_udp: bool = True, parallel: bool = False, clock=None, **overrides):
        port = free_port()
        config = dataclasses.replace(TEST, port=port, advertise=f"127.0.0.1:{port}", transport="udp",
                                     db=str(tmp_path / f"{name}.db"), **{"timeout": 1.0, **overrides})
        n = build_node(config, clock=clock or FakeClock(), parallel=parallel)
        web = waitress.create_server(create_app(node=n), host="127.0.0.1", port=port, threads=2, ident=SERVER_IDENT)
        thread = threading.Thread(target=web.run, daemon=True)
        thread.start()
        udp = UdpServer(n, "127.0.0.1", port, max_datagram=config.max_datagram, workers=2) if serve_udp else None
        if udp is not None:
            udp.start()
        made.append((n, web, thread, udp))
        return n

    yield node
    for n, web, thread, udp in made:
        if udp is not None:
            udp.close()
        n.transport.close()
        web.trigger.pull_trigger(web.close)
        thread.join(5)
        web.task_dispatcher.shutdown()
        n.store.close()


# -- too big for one datagram: HTTP ----------------------------------------------------------------


def test_request_too_big_for_a_datagram_goes_over_http(make):
    a, b = make("a", max_datagram=512), make("b", max_datagram=512)
    for i in range(30):
        a.register(f"10.0.2.{i}:80", "bulk")

    result = a.exchange(b.address)  # the summary fits; the push of 30 entries does not

    assert result.ok, result.error
    assert result.sent == 30 and b.listing().keys() >= {f"10.0.2.{i}:80" for i in range(30)}
    assert a.transport.fallbacks == 1 and metric(a.address, "sd_gossip_udp_fallbacks_total") == 1
    assert a.stats.bytes_sent == b.stats.bytes_received and a.stats.bytes_received == b.stats.bytes_sent


def test_reply_too_big_for_a_datagram_is_asked_again_over_http(make):
    a, b = make("a", max_datagram=512), make("b", max_datagram=512)
    for i in range(30):
        b.register(f"10.0.3.{i}:80", "bulk")

    result = a.exchange(b.address)  # b's digest of 30 entries does not fit: "too big", then HTTP

    assert result.ok, result.error
    assert result.received == 30 and a.listing().keys() >= {f"10.0.3.{i}:80" for i in range(30)}
    assert a.transport.fallbacks >= 1
    # The "too big" datagram counts on both sides, as does the HTTP exchange after it.
    assert a.stats.bytes_sent == b.stats.bytes_received and a.stats.bytes_received == b.stats.bytes_sent
    fallbacks = a.transport.fallbacks
    at_rest = a.exchange(b.address)  # converged: one summary datagram each way
    assert at_rest.ok and a.transport.fallbacks == fallbacks


def test_node_that_serves_no_datagrams_is_asked_over_http(make):
    """A node of a version before datagrams answers only HTTP: a cluster can be upgraded node by node."""
    a, old = make("a"), make("old", serve_udp=False)
    old.register("10.0.6.1:80", "on-old")

    first, second = a.exchange(old.address), a.exchange(old.address)

    assert first.ok and second.ok, (first.error, second.error)
    assert "10.0.6.1:80" in a.listing()
    assert a.transport.fallbacks == 3  # the summary refused as a datagram, then the push and the next summary


# -- matching replies to requests ------------------------------------------------------------------


class Peer:
    """A UDP peer that answers each request through ``answer(request datagram) -> [(delay, datagram)]``."""

    def __init__(self, answer) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer = answer
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            data, source = self.sock.recvfrom(65535)
        except OSError:
            return
        for delay, out in self.answer(unpack(data)):
            time.sleep(delay)
            try:
                self.sock.sendto(out, source)
            except OSError:  # closed by the test meanwhile
                return

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def reply_to(request, body: dict, rid: bytes | None = None) -> bytes:
    """An (open keyring) reply datagram to ``request``, under its id or ``rid``."""
    payload = encode(body)
    rid = request.id if rid is None else rid
    return pack(KIND_REPLY, rid, Keyring().seal(rid + payload, "reply"), payload)


SUMMARY = wire_encode(Summary("127.0.0.1:1", ["0"]), 0.0)


def test_reply_under_another_id_is_dropped_and_the_right_one_taken():
    peer = Peer(lambda req: [(0, reply_to(req, {"v": 1, "forged": True}, rid=b"\0" * ID_BYTES)),
                             (0, reply_to(req, {"v": 1, "buckets": []}))])
    try:
        reply = UdpTransport().send(peer.address, SUMMARY, 2.0)
    finally:
        peer.close()
    assert reply.body == {"v": 1, "buckets": []}


def test_only_replies_under_other_ids_fail_the_send_at_its_deadline():
    peer = Peer(lambda req: [(0, reply_to(req, {"v": 1, "buckets": []}, rid=bytes(ID_BYTES - i) + b"\1" * i))
                             for i in range(1, 4)])
    started = time.monotonic()
    try:
        with pytest.raises(TransportError, match="no reply by the deadline"):
            UdpTransport().send(peer.address, SUMMARY, 0.5)
    finally:
        peer.close()
    assert 0.5 <= time.monotonic() - started < 1.5


def test_reply_after_the_deadline_is_dropped():
    peer = Peer(lambda req: [(0.6, reply_to(req, {"v": 1, "buckets": []}))])
    try:
        with pytest.raises(TransportError, match="no reply by the deadline"):
            UdpTransport().send(peer.address, SUMMARY, 0.3)
    finally:
        peer.close()


# -- a lost datagram is one failed exchange --------------------------------------------------------


def test_lost_datagram_fails_that_exchange_and_the_round_goes_on(make):
    a, b = make("a", timeout=0.3), make("b")
    a.register("10.0.4.1:80", "on-a")
    black_hole = Peer(lambda req: [])  # receives the request and never answers

    try:
        done = a.run_round(peers=[black_hole.address, b.address])
    finally:
        black_hole.close()

    assert [e.ok for e in done] == [False, True]
    assert "no reply by the deadline" in done[0].error
    assert a.stats.exchanges_failed == 1 and a.stats.exchanges_ok == 1
    assert "10.0.4.1:80" in b.listing()
    assert a.last_round.failures == 1


def test_round_sends_its_summaries_at_once_and_each_exchange_ends_on_its_own(make):
    """A node's round (parallel: ``UdpTransport.send_all``): a silent peer fails its exchange only,
    an exchange that needs a push completes it, a converged one ends with the summary's reply."""
    a = make("a", parallel=True, timeout=0.5)
    b, c = make("b"), make("c")
    for n in (a, b, c):
        n.renew_self()  # each node's own entry, as its first round writes it
    a.register("10.0.7.1:80", "on-a")
    c.register("10.0.7.2:80", "on-c")
    a.exchange(b.address)  # a and b converged beforehand
    black_hole = Peer(lambda req: [])

    try:
        done = a.run_round(peers=[b.address, black_hole.address, c.address])
    finally:
        black_hole.close()

    assert [e.peer for e in done] == [b.address, black_hole.address, c.address]
    assert [e.ok for e in done] == [True, False, True], [e.error for e in done]
    assert "no reply by the deadline" in done[1].error
    assert (done[0].sent, done[0].received) == (0, 0)
    assert (done[2].sent, done[2].received) == (3, 2)  # on-a, a and b to c; on-c and c to a
    assert {"10.0.7.1:80", "10.0.7.2:80"} <= a.listing().keys() and "10.0.7.1:80" in c.listing()
    assert a.stats.exchanges_ok == 2 + 1 and a.stats.exchanges_failed == 1  # the one before the round counts
    assert a.stats.bytes_sent == b.stats.bytes_received + c.stats.bytes_received + done[1].bytes_sent


def round_beside_a_black_hole(node, *peers: str):
    """Run ``node``'s round with a peer that never answers first, then ``peers``; return its exchanges."""
    black_hole = Peer(lambda req: [])
    try:
        return node.run_round(peers=[black_hole.address, *peers])
    finally:
        black_hole.close()


def test_an_exchange_of_a_round_goes_on_without_waiting_for_a_silent_one(make):
    """On the wall clock: the reply of a live peer is taken when it comes, not when the silent
    peer's deadline has passed (it would be judged late and the push would find no time left)."""
    a = make("a", parallel=True, clock=Clock(), timeout=0.5)
    b = make("b", clock=Clock())
    a.register("10.0.8.1:80", "on-a")

    done = round_beside_a_black_hole(a, b.address)

    assert [e.ok for e in done] == [False, True], [e.error for e in done]
    assert done[1].sent >= 1 and "10.0.8.1:80" in b.listing()
    assert a.stats.late_replies == 0


def test_a_reply_too_big_for_a_datagram_is_asked_over_http_without_waiting_for_a_silent_peer(make):
    a = make("a", parallel=True, clock=Clock(), timeout=0.5, max_datagram=512)
    b = make("b", clock=Clock(), max_datagram=512)
    for i in range(30):
        b.register(f"10.0.9.{i}:80", "bulk")  # b's digest of them does not fit: "too big", then HTTP

    done = round_beside_a_black_hole(a, b.address)

    assert [e.ok for e in done] == [False, True], [e.error for e in done]
    assert done[1].received >= 30 and a.transport.fallbacks >= 1


def test_send_all_returns_each_reply_in_request_order():
    late = Peer(lambda req: [(0.2, reply_to(req, {"v": 1, "who": "late"}))])
    soon = Peer(lambda req: [(0, reply_to(req, {"v": 1, "who": "soon"}))])
    try:
        replies = UdpTransport().send_all([(late.address, SUMMARY), (soon.address, SUMMARY)], 2.0)
    finally:
        late.close()
        soon.close()
    assert [r.body["who"] for r in replies] == ["late", "soon"]


# -- the envelope ----------------------------------------------------------------------------------


def test_signed_datagram_under_another_request_id_is_refused(make):
    """The id is signed with the payload: a captured datagram replayed under a new id is refused."""
    b = make("b", gossip_keys=(KEY,))
    payload = encode(SUMMARY)
    rid = b"\1" * ID_BYTES
    seal = Keyring(parse_keys(KEY)).seal(rid + payload, REQUEST)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", b.config.port))
        sock.send(pack(KIND_REQUEST, rid, seal, payload))
        good = unpack(sock.recv(65535))
        sock.send(pack(KIND_REQUEST, b"\2" * ID_BYTES, seal, payload))
        replayed = unpack(sock.recv(65535))

    assert good.kind == KIND_REPLY
    assert replayed.kind == KIND_ERROR and decode(replayed.payload)["status"] == 403
    assert b.stats.rejected["bad_signature"] == 1


def test_garbage_datagrams_are_dropped_and_the_server_keeps_serving(make):
    b = make("b")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.connect(("127.0.0.1", b.config.port))
        for junk in (b"", b"GET / HTTP/1.1\r\n\r\n", b"\xd1\x01" + b"\0" * 3, b"\xd9\x01" + b"\0" * 40):
            sock.send(junk)
            with pytest.raises(TimeoutError):
                sock.recv(65535)
        bad = pack(KIND_REQUEST, b"\3" * ID_BYTES, {"X-SD-Cluster": "default"}, b"\xc1not msgpack")
        sock.send(bad)
        error = unpack(sock.recv(65535))
    assert error.kind == KIND_ERROR and decode(error.payload)["status"] == 400
    assert UdpTransport().send(b.address, SUMMARY, 1.0).body["v"] == 1


# -- real node processes ---------------------------------------------------------------------------


def metric(address: str, name: str) -> float:
    """One sample of a node's /metrics."""
    text = requests.get(f"http://{address}/metrics", timeout=2).text
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}[name]


def gossip_totals(address: str) -> tuple[float, float]:
    """A node's gossip bytes (sent + received) and completed exchanges, from /metrics."""
    return (metric(address, "sd_gossip_bytes_sent_total") + metric(address, "sd_gossip_bytes_received_total"),
            metric(address, "sd_gossip_exchanges_ok_total"))


def test_three_node_processes_converge_over_udp(tmp_path):
    procs = cluster_of(3, "--preset", "local", "--transport", "udp", folder=tmp_path, prefix="udp")
    try:
        first, last = procs[0], procs[-1]
        requests.post(first.url + "/registry/register_instance",
                      json={"address": "10.9.0.1:80", "app_name": "over-udp"}, timeout=2).raise_for_status()
        seen = wait_until(lambda: "10.9.0.1:80" in last.get("/registry/list"),
                          timeout=15, interval=0.2)
        assert seen.ok, last.log_tail()
        # At rest an exchange is two small datagrams (an HTTP exchange takes ~580 bytes).
        before = [gossip_totals(p.address) for p in procs]
        time.sleep(2)
        after = [gossip_totals(p.address) for p in procs]
        moved = sum(x[0] - y[0] for x, y in zip(after, before, strict=True))
        exchanges = sum(x[1] - y[1] for x, y in zip(after, before, strict=True))
        assert exchanges > 0 and moved / exchanges < 2 * 300, (moved, exchanges)
    finally:
        stop_all(procs)


def test_no_answer_is_more_than_four_times_its_request(make):
    """A small request with a forged source cannot make a node send a big datagram: HTTP carries it."""
    b = make("b")
    for i in range(20):
        b.register(f"10.0.5.{i}:80", "bulk")
    payload = encode(SUMMARY)  # one bucket that differs: answered with b's whole digest
    request = pack(KIND_REQUEST, b"\4" * ID_BYTES, {"X-SD-Cluster": "default"}, payload)

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", b.config.port))
        sock.send(request)
        data = sock.recv(65535)

    assert unpack(data).kind == KIND_TOO_BIG and len(data) <= len(request)
    reply = UdpTransport().send(b.address, SUMMARY, 2.0)  # the sender asks again over HTTP
    assert len(reply.body["digest"]) == 20 and 4 * len(request) < len(encode(reply.body)) < 1200


def test_payload_keys_travel_as_indexes_and_come_back_as_names():
    message = {**SUMMARY, "novel": [1, "x"]}  # a key outside the table travels as a string
    data = encode(message)
    assert decode(data) == message
    assert b"buckets" not in data and b"novel" in data
    hashes = ["0", "ff", "9f3a0c2e7b1d4e55", "0x1f", "F", "nothex"]  # the last three are sent as they are
    summary = {**SUMMARY, "buckets": hashes}
    assert decode(encode(summary)) == summary
    # "0" -> 0 (1 byte, as in SUMMARY), "ff" -> 255 (2 bytes), a 64-bit hash -> 9 bytes, not 17
    assert len(encode({**SUMMARY, "buckets": hashes[:3]})) == len(encode(SUMMARY)) + 2 + 9
    with pytest.raises(ValueError, match="unknown key index"):
        decode(msgpack.packb({99: 1}))
