"""One exchange driven by hand: the pure steps of both sides, every message through JSON, no transport."""

from __future__ import annotations

import json

import pytest

from node import wire
from node.handshake import Initiator, respond
from node.protocol import Lease
from node.store import Store
from node.wire import ProtocolError, Push, PushReply, Summary, SummaryReply

LEASE = Lease(ttl=6.0, expire_grace=6.0, tombstone_ttl=60.0)
T0 = 1_700_000_000.0
A, B = "n1:5000", "n2:5000"


def carry(message, now: float) -> dict:
    """What the other side receives: the message encoded and serialized, then parsed."""
    return json.loads(wire.dumps(wire.encode(message, now)))


def exchange_by_hand(a: Store, b: Store, now: float) -> list[str]:
    """Run one exchange from ``a`` (initiator) to ``b``; return the kinds of the messages that passed."""
    steps = Initiator(A, a.snapshot(), LEASE)
    passed = []

    summary = wire.decode_request(carry(steps.start(), now), now)
    passed.append(type(summary).__name__)
    reply, news = respond(b.snapshot(), summary, now, LEASE)
    assert news == []  # a summary brings no entries
    reply = wire.decode_summary_reply(carry(reply, now))
    passed.append(type(reply).__name__)

    push = steps.on_summary_reply(reply, now)
    if push is None:
        return passed
    push = wire.decode_request(carry(push, now), now)
    passed.append(type(push).__name__)
    reply, news = respond(b.snapshot(), push, now, LEASE)
    b.apply(news, now)
    reply = wire.decode_push_reply(carry(reply, now), now)
    passed.append(type(reply).__name__)
    a.apply(steps.on_push_reply(reply), now)
    return passed


def stamps(store: Store, now: float) -> dict:
    return {address: (e.stamp, e.app_name, e.deleted) for address, e in store.live(now).items()}


@pytest.fixture
def pair():
    """Two stores that differ both ways: each holds entries the other lacks, or holds older."""
    a, b = Store(LEASE), Store(LEASE)
    for i in range(40):
        a.write_local(f"10.0.0.{i}:80", T0, int(T0), A, app_name="on-a")
    for i in range(30, 70):
        b.write_local(f"10.0.0.{i}:80", T0, int(T0), B, app_name="on-b")
    b.write_local("10.0.0.5:80", T0, int(T0), B, deleted=True)  # b is newer here: a tombstone
    return a, b


def test_two_nodes_converge_through_one_handshake_driven_by_hand(pair):
    a, b = pair
    before_a, before_b = stamps(a, T0), stamps(b, T0)

    passed = exchange_by_hand(a, b, T0)

    assert passed == ["Summary", "SummaryReply", "Push", "PushReply"]
    assert stamps(a, T0) == stamps(b, T0)
    assert len(stamps(a, T0)) == 70
    assert stamps(a, T0)["10.0.0.5:80"][2] is True  # the newer tombstone won on both sides
    for address in set(before_a) | set(before_b):  # everything each side held, at its larger stamp
        assert stamps(a, T0)[address] == max(s[address] for s in (before_a, before_b) if address in s)


def test_a_converged_pair_stops_after_the_summary(pair):
    a, b = pair
    exchange_by_hand(a, b, T0)

    assert exchange_by_hand(a, b, T0 + 1) == ["Summary", "SummaryReply"]
    assert exchange_by_hand(b, a, T0 + 1) == ["Summary", "SummaryReply"]
    reply, news = respond(b.snapshot(), Initiator(A, a.snapshot(), LEASE).start(), T0 + 1, LEASE)
    assert reply == wire.CONVERGED and news == []


def test_one_new_entry_costs_only_its_bucket(pair):
    a, b = pair
    exchange_by_hand(a, b, T0)
    b.write_local("10.9.9.9:80", T0 + 1, int(T0), B, app_name="late")

    steps = Initiator(A, a.snapshot(), LEASE)
    reply, _ = respond(b.snapshot(), steps.start(), T0 + 1, LEASE)

    assert len(reply.buckets) == 1 and len(reply.digest) < 71 / 4  # ~71/16 entries per bucket
    push = steps.on_summary_reply(reply, T0 + 1)
    assert push is not None and push.entries == [] and push.want == ["10.9.9.9:80"]


def test_the_responder_reports_what_a_push_changes_without_writing(pair):
    a, b = pair
    snap = b.snapshot()
    [mine] = [e for e in a.live(T0).values() if e.address == "10.0.0.1:80"]
    [older] = [e for e in b.live(T0).values() if e.address == "10.0.0.5:80"]

    reply, news = respond(snap, Push(A, [mine], [older.address]), T0, LEASE)

    assert reply == PushReply(1, [older]) and news == [mine]
    assert b.snapshot() is snap  # nothing written: the caller merges ``news``


def test_a_reply_naming_a_bucket_the_summary_lacks_is_a_protocol_error(pair):
    a, _ = pair
    steps = Initiator(A, a.snapshot(), LEASE)
    with pytest.raises(ProtocolError):
        steps.on_summary_reply(SummaryReply([steps.buckets], {}), T0)


@pytest.mark.parametrize("data", [
    {"v": wire.PROTOCOL_VERSION + 1, "type": "sum", "from": A, "buckets": ["0"]},
    {"type": "sum", "from": A, "buckets": "0"},
    {"type": "syn", "from": A, "digest": []},
])
def test_a_request_of_another_version_or_shape_is_a_protocol_error(data):
    with pytest.raises(ProtocolError):
        wire.decode_request(data, T0)


def test_a_summary_with_bad_hex_is_a_protocol_error(pair):
    _, b = pair
    with pytest.raises(ProtocolError, match="hex"):
        respond(b.snapshot(), Summary(A, ["zz", "0"]), T0, LEASE)


# -- the short summary: 32-bit bucket hashes, the 64-bit root decides ----------------------------


def test_from_four_buckets_a_summary_is_short_and_smaller_on_the_wire(pair):
    from node import udp

    a, _ = pair
    steps = Initiator(A, a.snapshot(), LEASE)
    short = steps.start()
    full = Summary(A, a.snapshot().summary_hex(steps.buckets))

    assert steps.buckets >= 4 and short.root is not None
    assert all(int(h, 16) < 2 ** 32 for h in short.buckets) and int(short.root, 16) >= 2 ** 32
    assert len(udp.encode(wire.encode(short, T0))) < len(udp.encode(wire.encode(full, T0)))
    assert udp.decode(udp.encode(wire.encode(short, T0))) == wire.encode(short, T0)  # same spelling back


def test_a_small_state_sends_full_bucket_hashes_and_no_root():
    a = Store(LEASE)
    a.write_local("10.0.0.1:80", T0, int(T0), A, app_name="one")
    assert Initiator(A, a.snapshot(), LEASE).start().root is None


def test_short_hashes_that_collide_cannot_hide_a_difference(pair):
    """Two states whose bucket hashes agree in their low 32 bits but whose roots differ: the
    responder cannot tell which bucket differs, so it answers all of them, and the pair converges."""
    a, b = pair
    nb = Initiator(A, a.snapshot(), LEASE).buckets
    b_short, _ = b.snapshot().short_summary_hex(nb)
    _, a_root = a.snapshot().short_summary_hex(nb)

    reply, _ = respond(b.snapshot(), Summary(A, b_short, a_root), T0, LEASE)

    assert list(reply.buckets) == list(range(nb))
    assert set(reply.digest) == set(b.live(T0))


def test_a_full_summary_without_root_is_still_answered(pair):
    """A node that sends 64-bit bucket hashes and no root (before the short form) is answered as before."""
    a, b = pair
    exchange_by_hand(a, b, T0)
    b.write_local("10.9.9.8:80", T0 + 1, int(T0), B, app_name="late")
    nb = Initiator(A, a.snapshot(), LEASE).buckets

    reply, _ = respond(b.snapshot(), Summary(A, a.snapshot().summary_hex(nb)), T0 + 1, LEASE)
    converged, _ = respond(a.snapshot(), Summary(A, a.snapshot().summary_hex(nb)), T0 + 1, LEASE)

    assert len(reply.buckets) == 1 and "10.9.9.8:80" in reply.digest
    assert converged == wire.CONVERGED


@pytest.mark.parametrize("root", [7, "", "1" * 17])
def test_a_summary_with_a_bad_root_is_a_protocol_error(root):
    with pytest.raises(ProtocolError, match="root"):
        wire.decode_request({"v": wire.PROTOCOL_VERSION, "type": "sum", "from": A, "buckets": ["0"] * 4,
                             "root": root}, T0)


def test_a_summary_with_a_root_that_is_not_hex_is_a_protocol_error(pair):
    _, b = pair
    with pytest.raises(ProtocolError, match="root"):
        respond(b.snapshot(), Summary(A, ["0"] * 16, "zz"), T0, LEASE)
