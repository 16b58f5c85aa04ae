"""/gossip holds entries to the client API's rule, and a request's wants cannot amplify its reply."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node import wire
from node.app import create_app
from node.handshake import wanted
from node.protocol import Lease
from node.store import SqliteStore
from node.validation import app_name_problem

GOOD = ["10.7.0.1:80", "web", 1, 5, "n9:5000", 0, 0.0]
"""A well-formed wire entry that every node merges."""

# App names register_instance answers 400 to; gossip must not bring them in either.
BAD_APP_NAMES = [
    pytest.param("", id="empty"),
    pytest.param("   ", id="blank"),
    pytest.param("web\x00", id="nul"),
    pytest.param("web\nadmin", id="newline"),
    pytest.param("web\u200b", id="zero-width-space"),
    pytest.param("\x1b[31mweb", id="escape"),
    pytest.param("x" * 256, id="too-long"),
]
BAD_ADDRESSES = ["999.999.999.999:80", "10.7.0.2", "[:]:80", "bad host:80", "10.7.0.2:\u0668\u0660"]


def wire_entry(address="10.7.0.2:80", app_name="web", origin="n9:5000", deleted=0) -> list:
    return [address, app_name, 1, 5, origin, deleted, 0.0]


def push(*entries, want=()) -> dict:
    return {"v": 1, "type": wire.PUSH, "from": "n9:5000", "entries": list(entries), "want": list(want)}


def gossip(client, message):
    """POST a gossip message as a peer would (the test nodes run open, without keys)."""
    return client.post("/gossip", data=json.dumps(message), content_type="application/json")


def refused(client, reason):
    text = client.get("/metrics").get_data(as_text=True)
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "sd_gossip_entries_refused_total" and s.labels == {"reason": reason})


# -- one rule for clients and peers --------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_APP_NAMES)
def test_an_app_name_clients_are_refused_is_dropped_from_gossip_and_the_rest_merged(client, node, name):
    r = client.post("/registry/register_instance", json={"address": "10.7.0.3:80", "app_name": name})
    assert r.status_code == 400 and r.get_json()["error"] == "bad_request"

    r = gossip(client, push(wire_entry(app_name=name), GOOD))
    assert r.status_code == 200
    assert set(node.store.snapshot().entries) == {"10.7.0.1:80"}
    assert refused(client, "app_name") == 1
    assert "10.7.0.2:80" not in client.get("/registry/entries").get_json()


@pytest.mark.parametrize("address", BAD_ADDRESSES)
@pytest.mark.parametrize("field", ["address", "origin"])
def test_an_address_clients_are_refused_is_dropped_from_gossip_and_the_rest_merged(client, node, address, field):
    r = client.post("/registry/register_instance", json={"address": address, "app_name": "web"})
    assert r.status_code == 400

    r = gossip(client, push(wire_entry(**{field: address}), GOOD))
    assert r.status_code == 200, r.get_json()
    assert set(node.store.snapshot().entries) == {"10.7.0.1:80"}
    assert refused(client, "address") == 1


def test_a_spelling_other_than_the_canonical_one_is_dropped_from_gossip(client, node):
    # A client's spelling is stored canonical (10.7.0.2:80); a peer must send that spelling.
    r = gossip(client, push(wire_entry(address="10.7.0.2:00080"), GOOD))
    assert r.status_code == 200
    assert set(node.store.snapshot().entries) == {"10.7.0.1:80"}
    assert refused(client, "address") == 1


def test_a_bad_entry_does_not_shadow_a_good_one_for_the_same_address(client, node):
    # Same address and version; the bad one's origin sorts higher, so it would win the merge.
    r = gossip(client, push(wire_entry(address="10.7.0.1:80", app_name="web\x00", origin="n99:5000"), GOOD))
    assert r.json["applied"] == 1
    assert node.store.snapshot().entries["10.7.0.1:80"].app_name == "web"


def test_a_tombstone_of_an_address_never_held_keeps_its_empty_app_name(client, node):
    # A node that deregisters an address it never held writes a tombstone under app_name "".
    r = gossip(client, push(wire_entry(app_name="", deleted=1)))
    assert r.status_code == 200
    assert node.store.snapshot().entries["10.7.0.2:80"].deleted
    assert refused(client, "app_name") == 0


def test_a_peer_holding_a_bad_entry_still_replicates_the_others(make_node, clock):
    n1, n2 = make_node("n1:5001"), make_node("n2:5001", seeds=("n1:5001",))
    # Written under the store, as an older node that took such names would hold them.
    n2.store.write_local("10.7.0.5:80", clock.now(), int(clock.wall()), n2.address, app_name="bad\x07name")
    n2.store.write_local("10.7.0.6:80", clock.now(), int(clock.wall()), n2.address, app_name="good")
    n1.register("10.7.0.7:80", "mine")

    assert n1.exchange("n2:5001").ok and n2.exchange("n1:5001").ok
    assert {"10.7.0.6:80", "10.7.0.7:80"} <= set(n1.store.snapshot().entries)
    assert "10.7.0.5:80" not in n1.store.snapshot().entries
    assert n1.stats.refused["app_name"] >= 1
    assert "10.7.0.7:80" in n2.store.snapshot().entries  # and n2 still learns from n1


def test_an_entry_refused_every_round_is_warned_about_once(client, node, caplog):
    for _ in range(5):
        gossip(client, push(wire_entry(app_name="web\x00"), GOOD))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "refused" in r.getMessage()]
    assert len(warnings) == 1 and "10.7.0.2:80" in warnings[0].getMessage()
    assert refused(client, "app_name") == 5


def test_a_stored_entry_no_client_could_write_is_left_out_at_start(tmp_path):
    lease = Lease(30, 30, 120)
    store = SqliteStore(str(tmp_path / "r.db"), lease)
    store.write_local("10.7.0.1:80", 0.0, 0, "n1:5000", app_name="web")
    store.write_local("10.7.0.2:80", 0.0, 0, "n1:5000", app_name="we\x00b")
    store.close()
    reopened = SqliteStore(str(tmp_path / "r.db"), lease)
    try:
        assert set(reopened.snapshot().entries) == {"10.7.0.1:80"}
    finally:
        reopened.close()


def test_the_rule_is_the_one_register_instance_applies():
    assert app_name_problem("web") is None
    assert "control characters" in (app_name_problem("a\tb") or "")
    assert "longer than 255" in (app_name_problem("x" * 256) or "")


# -- wants ---------------------------------------------------------------------------------------


@pytest.fixture
def stocked(node):
    """``node`` holding ten instances 10.8.0.0:80 .. 10.8.0.9:80."""
    for i in range(10):
        node.register(f"10.8.0.{i}:80", "web")
    return node


def test_a_repeated_want_is_answered_once(client, stocked):
    one = gossip(client, push(want=["10.8.0.1:80"]))
    many = gossip(client, push(want=["10.8.0.1:80"] * 1000))
    assert many.status_code == 200
    assert [e[0] for e in many.json["entries"]] == ["10.8.0.1:80"]
    assert len(many.get_data()) == len(one.get_data())


def test_a_want_list_longer_than_the_store_is_answered_with_the_store_at_most(client, stocked):
    addresses = [f"10.8.0.{i}:80" for i in range(10)]
    want = addresses * 50 + [f"10.9.0.{i}:80" for i in range(200)]
    r = gossip(client, push(want=want))
    got = [e[0] for e in r.json["entries"]]
    assert sorted(got) == sorted(addresses)
    assert len(r.get_data()) < 2 * len(gossip(client, push(want=addresses)).get_data())


def test_wanted_keeps_the_order_of_first_mention(stocked, clock):
    snap = stocked.store.snapshot()
    got = wanted(snap, ["10.8.0.3:80", "10.8.0.1:80", "10.8.0.3:80", "x:1"], clock.now(), stocked.lease)
    assert [e.address for e in got] == ["10.8.0.3:80", "10.8.0.1:80"]


def test_the_metric_lists_every_reason_from_the_start(node):
    client = create_app(node=node).test_client()
    assert [refused(client, r) for r in ("version_jump", "address", "app_name")] == [0, 0, 0]
