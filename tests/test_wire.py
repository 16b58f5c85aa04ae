"""Gossip messages on the wire: their JSON shape, the protocol version, and what decoding refuses."""

from __future__ import annotations

import dataclasses
import json

import pytest

from node import wire
from node.protocol import MAX_BUCKETS, Entry
from node.wire import (
    PROTOCOL_VERSION,
    ProtocolError,
    Push,
    PushReply,
    Summary,
    SummaryReply,
    decode_push_reply,
    decode_request,
    decode_summary_reply,
    entry_from_wire,
    entry_to_wire,
)

T0 = 1_700_000_000.0


def entry(address="a:1", app_name="web", version=7, origin="n2:5000", deleted=False, renewed_at=T0 - 1.5) -> Entry:
    return Entry(address, app_name, int(T0), version, origin, deleted, renewed_at)


def on_the_wire(message, now: float = T0) -> dict:
    """The JSON object a peer receives for ``message``: encoded, serialized and parsed back."""
    return json.loads(wire.dumps(wire.encode(message, now)))


# -- shapes: what older nodes send and read, plus the version ------------------------------------


def test_message_type_names_are_the_ones_every_node_speaks():
    # Append-only: a name on the wire never changes meaning, so old and new nodes agree.
    assert (wire.SUMMARY, wire.PUSH) == ("sum", "ack")
    assert "syn" in wire.RETIRED and not {wire.SUMMARY, wire.PUSH} & wire.RETIRED


def test_every_message_has_its_historic_shape_plus_the_version():
    e = entry()
    assert on_the_wire(Summary("n1:5000", ["0", "ff"])) == {
        "v": PROTOCOL_VERSION, "type": "sum", "from": "n1:5000", "buckets": ["0", "ff"]}
    assert on_the_wire(wire.CONVERGED) == {"v": PROTOCOL_VERSION, "buckets": []}
    assert on_the_wire(SummaryReply([1], {"a:1": (7, "n2:5000")})) == {
        "v": PROTOCOL_VERSION, "buckets": [1], "digest": [["a:1", 7, "n2:5000"]]}
    assert on_the_wire(Push("n1:5000", [e], ["b:1"])) == {
        "v": PROTOCOL_VERSION, "type": "ack", "from": "n1:5000",
        "entries": [["a:1", "web", int(T0), 7, "n2:5000", 0, 1.5]], "want": ["b:1"]}
    assert on_the_wire(PushReply(0, [])) == {"v": PROTOCOL_VERSION, "applied": 0}
    assert on_the_wire(PushReply(2, [e]))["entries"] == [entry_to_wire(e, T0)]


def test_each_message_decodes_to_what_was_encoded():
    e = entry(deleted=True)
    later = 100.0  # the receiver's clock: only renewed_at moves
    moved = dataclasses.replace(e, renewed_at=later - 1.5)
    assert decode_request(on_the_wire(Summary("n1:5000", ["3"])), later) == Summary("n1:5000", ["3"])
    assert decode_request(on_the_wire(Push("n1:5000", [e], ["b:1"])), later) == Push("n1:5000", [moved], ["b:1"])
    reply = SummaryReply([0, 2], {"a:1": (7, "n2:5000"), "b:1": (1, "n1:5000")})
    assert decode_summary_reply(on_the_wire(reply)) == reply
    assert decode_push_reply(on_the_wire(PushReply(1, [e])), later) == PushReply(1, [moved])


def test_a_message_without_version_is_read_as_version_1():
    """What a node from before the field sends: accepted, so a cluster upgrades one node at a time."""
    old_summary = {"type": "sum", "from": "n1:5000", "buckets": ["0"]}
    assert decode_request(old_summary, T0) == Summary("n1:5000", ["0"])
    assert decode_summary_reply({"buckets": []}) == wire.CONVERGED
    assert decode_push_reply({"applied": 1}, T0) == PushReply(1, [])


@pytest.mark.parametrize("version", [PROTOCOL_VERSION + 1, 0, -1, "1", 1.0, True, None])
def test_a_version_not_spoken_here_is_refused(version):
    with pytest.raises(ProtocolError, match="version"):
        decode_request({"v": version, "type": "sum", "from": "n1:5000", "buckets": ["0"]}, T0)
    with pytest.raises(ProtocolError, match="version"):
        decode_summary_reply({"v": version, "buckets": []})


# -- decoding refuses malformed messages -----------------------------------------------------------


@pytest.mark.parametrize("data", [
    pytest.param(None, id="null"),
    pytest.param([], id="list"),
    pytest.param({}, id="no-type"),
    pytest.param({"type": "syn", "digest": [["a:1", 1, "n1:5000"]]}, id="retired-syn"),
    pytest.param({"type": "bogus"}, id="unknown-type"),
    pytest.param({"type": "sum", "from": 5, "buckets": ["0"]}, id="from-not-a-string"),
    pytest.param({"type": "sum", "buckets": "0"}, id="buckets-string"),
    pytest.param({"type": "sum", "buckets": []}, id="no-bucket"),
    pytest.param({"type": "sum", "buckets": ["0"] * (MAX_BUCKETS + 1)}, id="too-many-buckets"),
    pytest.param({"type": "ack"}, id="ack-no-entries"),
    pytest.param({"type": "ack", "entries": [], "want": "a:1"}, id="ack-want-string"),
    pytest.param({"type": "ack", "entries": [], "want": [1]}, id="ack-want-int"),
])
def test_malformed_requests_are_refused(data):
    with pytest.raises(ProtocolError):
        decode_request(data, T0)


@pytest.mark.parametrize("data", [
    pytest.param({"buckets": "0"}, id="buckets-string"),
    pytest.param({"buckets": [-1], "digest": []}, id="bucket-negative"),
    pytest.param({"buckets": [True], "digest": []}, id="bucket-bool"),
    pytest.param({"buckets": [0]}, id="no-digest"),
    pytest.param({"buckets": [0], "digest": "x"}, id="digest-string"),
    pytest.param({"buckets": [0], "digest": {"a:1": [1, "o"]}}, id="digest-object"),
    pytest.param({"buckets": [0], "digest": [["a:1", 1]]}, id="digest-item-short"),
    pytest.param({"buckets": [0], "digest": [["a:1", "1", "o"]]}, id="digest-version-string"),
    pytest.param({"buckets": [0], "digest": [["a:1", 0, "o"]]}, id="digest-version-0"),
    pytest.param({"buckets": [0], "digest": [[1, 1, "o"]]}, id="digest-address-int"),
    pytest.param({"buckets": [0], "digest": [None]}, id="digest-item-null"),
])
def test_malformed_summary_replies_are_refused(data):
    with pytest.raises(ProtocolError):
        decode_summary_reply(data)


@pytest.mark.parametrize("data", [
    pytest.param({"applied": "1"}, id="applied-string"),
    pytest.param({"applied": 0, "entries": {}}, id="entries-object"),
    pytest.param({"applied": 0, "entries": [["a:1"]]}, id="entry-short"),
])
def test_malformed_push_replies_are_refused(data):
    with pytest.raises(ProtocolError):
        decode_push_reply(data, T0)


# -- entries ---------------------------------------------------------------------------------------


def test_entry_round_trip_keeps_everything_but_the_local_clock():
    e = entry(renewed_at=T0 - 1.5, deleted=True, version=7, origin="n2:5000")
    got = entry_from_wire(entry_to_wire(e, T0), 100.0)
    assert got == dataclasses.replace(e, renewed_at=100.0 - 1.5)


def test_entry_from_wire_builds_an_ordinary_frozen_entry():
    e = entry_from_wire(["a:1", "web", 5, 3, "n1:5000", 1, 1.5], T0)
    same = Entry("a:1", "web", 5, 3, "n1:5000", True, T0 - 1.5)
    assert type(e) is Entry and e == same and hash(e) == hash(same) and repr(e) == repr(same)
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.version = 4  # type: ignore[misc]


GOOD = ["a:1", "web", 1, 1, "n1:5000", 0, 0]


def with_field(index: int, value) -> list:
    """A well-formed entry item with one field replaced."""
    item = list(GOOD)
    item[index] = value
    return item


def test_the_reference_item_is_well_formed():
    assert entry_from_wire(GOOD, T0).address == "a:1"


@pytest.mark.parametrize("item", [
    None, "x", [], GOOD[:6], [*GOOD, 0],
    with_field(0, 1), with_field(4, 5), with_field(1, None),
    with_field(2, "1"), with_field(2, True), with_field(2, -1),
    with_field(3, 0), with_field(3, -3), with_field(3, True), with_field(3, 1.0), with_field(3, 2**53),
    with_field(5, 2), with_field(5, None),
    with_field(6, -0.5), with_field(6, None), with_field(6, "0"), with_field(6, True),
])
def test_entry_from_wire_rejects_malformed_items(item):
    with pytest.raises(ValueError):
        entry_from_wire(item, T0)


@pytest.mark.parametrize("item", [
    with_field(0, "a"), with_field(0, "a:0"), with_field(4, "o"), with_field(1, "x" * 256), with_field(1, "a\x00b"),
])
def test_entry_values_are_left_to_the_merge_rule(item):
    # Well-typed but unacceptable values decode; the node drops such an entry when merging
    # (node.validation, tests/test_gossip_validation.py), so one does not refuse a whole message.
    assert entry_from_wire(item, T0).address == item[0]


# -- liveness messages (node.liveness) ---------------------------------------------------------------


def test_liveness_messages_have_new_names_and_their_shapes():
    assert (wire.PING, wire.PROBE) == ("ping", "probe")
    assert not wire.LIVENESS_TYPES & (wire.RETIRED | {wire.SUMMARY, wire.PUSH})
    assert on_the_wire(wire.Ping("n1:5000")) == {"v": PROTOCOL_VERSION, "type": "ping", "from": "n1:5000"}
    assert on_the_wire(wire.Probe("n1:5000", "n3:5000")) == {
        "v": PROTOCOL_VERSION, "type": "probe", "from": "n1:5000", "target": "n3:5000"}
    assert on_the_wire(wire.Alive(False)) == {"v": PROTOCOL_VERSION, "alive": False}


def test_liveness_messages_decode_to_what_was_encoded():
    for message in (wire.Ping("n1:5000"), wire.Probe("n1:5000", "[::1]:80")):
        assert decode_request(on_the_wire(message), T0) == message
    for alive in (True, False):
        assert wire.decode_alive(on_the_wire(wire.Alive(alive))) == wire.Alive(alive)


@pytest.mark.parametrize("data", [
    pytest.param({"type": "probe", "from": "n1:5000"}, id="probe-no-target"),
    pytest.param({"type": "probe", "from": "n1:5000", "target": "n3"}, id="probe-target-no-port"),
    pytest.param({"type": "probe", "from": "n1:5000", "target": 5}, id="probe-target-int"),
    pytest.param({"type": "ping", "from": 5}, id="ping-from-int"),
    pytest.param({"v": PROTOCOL_VERSION + 1, "type": "ping", "from": "n1:5000"}, id="ping-version"),
])
def test_malformed_liveness_requests_are_refused(data):
    with pytest.raises(ProtocolError):
        decode_request(data, T0)


@pytest.mark.parametrize("data", [None, {}, {"alive": 1}, {"alive": "true"}, {"v": 0, "alive": True}])
def test_malformed_alive_replies_are_refused(data):
    with pytest.raises(ProtocolError):
        wire.decode_alive(data)


# -- rumors (node.rumor: eager push) -----------------------------------------------------------------


def test_a_rumor_has_a_new_name_its_shape_and_an_ack_of_a_push_reply():
    assert wire.RUMOR == "rumor"
    assert wire.RUMOR not in wire.RETIRED | wire.LIVENESS_TYPES | {wire.SUMMARY, wire.PUSH}
    e = entry()
    assert on_the_wire(wire.Rumor("n1:5000", [e])) == {
        "v": PROTOCOL_VERSION, "type": "rumor", "from": "n1:5000",
        "entries": [["a:1", "web", int(T0), 7, "n2:5000", 0, 1.5]]}
    later = 100.0  # the receiver's clock: only renewed_at moves
    moved = dataclasses.replace(e, renewed_at=later - 1.5)
    assert decode_request(on_the_wire(wire.Rumor("n1:5000", [e])), later) == wire.Rumor("n1:5000", [moved])
    assert decode_push_reply(on_the_wire(PushReply(1, [])), T0) == PushReply(1, [])


def test_a_rumor_crosses_a_datagram_unchanged():
    from node import udp

    message = wire.encode(wire.Rumor("n1:5000", [entry(), entry("b:2", deleted=True)]), T0)
    assert udp.decode(udp.encode(message)) == message


@pytest.mark.parametrize("data", [
    pytest.param({"type": "rumor", "from": "n1:5000"}, id="no-entries"),
    pytest.param({"type": "rumor", "from": "n1:5000", "entries": {}}, id="entries-object"),
    pytest.param({"type": "rumor", "from": "n1:5000", "entries": [["a:1"]]}, id="entry-short"),
    pytest.param({"type": "rumor", "from": 5, "entries": []}, id="from-int"),
    pytest.param({"v": PROTOCOL_VERSION + 1, "type": "rumor", "from": "n1:5000", "entries": []}, id="version"),
])
def test_malformed_rumors_are_refused(data):
    with pytest.raises(ProtocolError):
        decode_request(data, T0)
