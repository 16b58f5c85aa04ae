"""The HTTP API through Flask's test client: contract, gossip endpoints, ops, bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from node.app import create_app
from node.clock import FakeClock
from node.protocol import NODE_APP

T0 = 1_700_000_000  # FakeClock's default start, so the wall time of an unskewed node


def register(client, address, app_name="web", path="/registry/register_instance", **extra):
    return client.post(path, json={"address": address, "app_name": app_name, **extra})


def listing(client, query=""):
    resp = client.get(f"/registry/list{query}")
    assert resp.status_code == 200, resp.data
    return resp.get_json()


def digest(client):
    return client.get("/registry/digest").get_json()


def held(client):
    return client.get("/registry/entries").get_json()


def assert_json_error(resp, status):
    """The response is ``status`` with exactly ``{"error": str, "message": str}`` as JSON."""
    assert resp.status_code == status, (resp.status_code, resp.data[:300])
    assert resp.is_json, resp.data[:300]
    body = resp.get_json()
    assert set(body) == {"error", "message"}
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    assert b"Traceback" not in resp.data and b"<html" not in resp.data.lower()


@pytest.fixture
def pair(make_node):
    """Two nodes on one network and a test client for each: (a, b, client_a, client_b).

    b is a's seed: perform_update?peer= reaches only a node's live peers and seeds. Eager
    push is off: these tests watch what one exchange moves, which a rumor would move first.
    """
    a, b = make_node("n1:5001", seeds=("n2:5002",), eager_push=False), make_node("n2:5002", eager_push=False)
    return a, b, create_app(node=a).test_client(), create_app(node=b).test_client()


def metrics(client):
    resp = client.get("/metrics")
    assert resp.status_code == 200
    return {s.name: s.value for f in text_string_to_metric_families(resp.get_data(as_text=True)) for s in f.samples}


# -- GET /registry/list -------------------------------------------------------------------


def test_list_is_empty_before_anything_is_registered(client):
    assert listing(client) == {}


def test_list_shape_is_address_to_exactly_four_fields(client):
    assert register(client, "10.0.0.1:80", "web").status_code == 201
    assert register(client, "10.0.0.2:81", "db").status_code == 201

    assert listing(client) == {
        "10.0.0.1:80": {"app_name": "web", "last_update": T0, "status": "healthy", "version": 1},
        "10.0.0.2:81": {"app_name": "db", "last_update": T0, "status": "healthy", "version": 2},
    }


def test_node_lists_itself_after_a_round(client, node):
    node.run_round()

    assert listing(client) == {
        "n1:5001": {"app_name": NODE_APP, "last_update": T0, "status": "healthy", "version": 1}
    }


def test_a_node_registers_itself_once_and_never_on_a_timer(client, node, clock):
    node.renew_self()
    for _ in range(5):
        clock.advance(node.config.ttl + node.config.expire_grace)  # far past any lease
        node.run_round()
    assert listing(client)["n1:5001"] == {"app_name": NODE_APP, "last_update": T0, "status": "healthy",
                                          "version": 1}
    assert node.store.snapshot().clock == 1  # no write since the first


def test_a_node_that_finds_itself_deleted_registers_again_above_the_tombstone(client, node):
    node.renew_self()
    tombstone = node.deregister("n1:5001").entry
    assert "n1:5001" not in listing(client)
    node.renew_self()
    assert listing(client)["n1:5001"]["version"] == tombstone.version + 1
    assert metrics(client)["sd_gossip_refutations_total"] == 1


def test_list_filters_by_app_name(client):
    register(client, "a:1", "web")
    register(client, "b:1", "db")
    register(client, "c:1", "web")

    assert set(listing(client, "?app_name=web")) == {"a:1", "c:1"}
    assert set(listing(client, "?app_name=db")) == {"b:1"}
    assert listing(client, "?app_name=nothing") == {}


def test_list_filters_by_status(client, clock):
    register(client, "old:1")
    clock.advance(4)
    register(client, "new:1")
    clock.advance(3)  # old is 7 s old (ttl 6: expired), new is 3 s old

    assert set(listing(client, "?status=healthy")) == {"new:1"}
    assert set(listing(client, "?status=expired")) == {"old:1"}
    assert listing(client, "?status=expired&app_name=other") == {}


@pytest.mark.parametrize("status", ["bogus", "deleted", "gone", "HEALTHY", ""])
def test_list_rejects_unknown_status_filter(client, status):
    assert_json_error(client.get(f"/registry/list?status={status}"), 400)


def test_list_drops_entries_after_ttl_plus_grace(client, clock, node):
    register(client, "a:1")
    clock.set(T0 + node.config.ttl + node.config.expire_grace - 0.001)
    assert listing(client)["a:1"]["status"] == "expired"
    clock.set(T0 + node.config.ttl + node.config.expire_grace)
    assert listing(client) == {}


# -- POST /registry/register_instance ---------------------------------------------------------


def test_register_creates_with_201_and_echoes_the_entry(client):
    resp = register(client, "10.0.0.1:8080", "web")

    assert resp.status_code == 201
    assert resp.get_json() == {
        "address": "10.0.0.1:8080", "app_name": "web", "last_update": T0, "status": "healthy", "version": 1
    }


def test_renewal_answers_200_with_higher_version_and_new_stamp(client, clock):
    first = register(client, "a:1").get_json()
    clock.advance(5)
    resp = register(client, "a:1")

    assert resp.status_code == 200
    body = resp.get_json()
    assert body["version"] > first["version"]
    assert body["last_update"] == T0 + 5
    assert listing(client)["a:1"] == {k: v for k, v in body.items() if k != "address"}


def test_renewal_restarts_the_lease(client, clock):
    register(client, "a:1")
    clock.advance(5)
    register(client, "a:1")
    clock.advance(5)  # 10 s after the first registration, 5 s after the renewal

    assert listing(client)["a:1"]["status"] == "healthy"


def test_renewal_can_change_app_name(client):
    register(client, "a:1", "web")
    assert register(client, "a:1", "api").status_code == 200
    assert listing(client)["a:1"]["app_name"] == "api"


def test_given_last_update_is_kept(client):
    resp = register(client, "a:1", last_update=T0 - 100)

    assert resp.status_code == 201
    assert resp.get_json()["last_update"] == T0 - 100
    assert listing(client)["a:1"]["last_update"] == T0 - 100


def test_float_last_update_is_stored_as_integer_seconds(client):
    register(client, "a:1", last_update=T0 - 0.75)
    assert listing(client)["a:1"]["last_update"] == T0 - 1


def test_last_update_up_to_max_future_ahead_is_accepted(client, node):
    resp = register(client, "a:1", last_update=T0 + node.config.max_future)
    assert resp.status_code == 201
    assert resp.get_json()["last_update"] == T0 + node.config.max_future


def test_last_update_beyond_max_future_is_refused(client, node):
    before = (listing(client), digest(client))
    assert_json_error(register(client, "a:1", last_update=T0 + node.config.max_future + 1), 400)
    assert (listing(client), digest(client)) == before


def test_max_future_is_measured_against_the_skewed_wall_clock(client, clock):
    clock.offset = 3600
    assert register(client, "a:1", last_update=T0 + 3600).status_code == 201


def test_legacy_register_path_registers(client):
    resp = register(client, "a:1", "web", path="/register/register_instance")

    assert resp.status_code == 201
    assert listing(client)["a:1"]["app_name"] == "web"


def test_register_after_deregister_answers_201(client):
    register(client, "a:1")
    client.post("/registry/deregister_instance", json={"address": "a:1"})

    resp = register(client, "a:1")
    assert resp.status_code == 201
    assert resp.get_json()["version"] == 3
    assert "a:1" in listing(client)


# -- POST /registry/deregister_instance -------------------------------------------------------


def test_deregister_removes_from_list_and_leaves_a_tombstone(client):
    register(client, "a:1", "web")
    register(client, "b:1", "web")

    resp = client.post("/registry/deregister_instance", json={"address": "a:1"})

    assert resp.status_code == 200
    assert resp.get_json() == {"address": "a:1", "deregistered": True, "known": True, "version": 3}
    assert set(listing(client)) == {"b:1"}
    tomb = held(client)["a:1"]
    assert tomb["deleted"] is True
    assert tomb["status"] == "deleted"
    assert tomb["version"] == 3
    assert tomb["app_name"] == "web"


def test_deregister_of_unknown_address_still_writes_a_tombstone(client):
    resp = client.post("/registry/deregister_instance", json={"address": "a:1"})

    assert resp.status_code == 200
    assert resp.get_json()["known"] is False
    assert held(client)["a:1"]["deleted"] is True
    assert listing(client) == {}


def test_tombstone_is_collected_after_tombstone_ttl(client, clock, node):
    register(client, "a:1")
    client.post("/registry/deregister_instance", json={"address": "a:1"})

    clock.set(T0 + node.config.tombstone_ttl - 0.001)
    node.run_round()
    assert held(client)["a:1"]["status"] == "deleted"

    clock.set(T0 + node.config.tombstone_ttl)
    node.run_round()
    assert "a:1" not in held(client)


# -- GET /registry/digest and gossip between two nodes ----------------------------------------


def test_digest_equal_for_same_data_different_otherwise(pair):
    a, b, ca, cb = pair
    assert digest(ca) == digest(cb) == {"digest": digest(ca)["digest"], "entries": 0}

    register(ca, "x:1", "web")
    assert digest(ca)["digest"] != digest(cb)["digest"]
    assert (digest(ca)["entries"], digest(cb)["entries"]) == (1, 0)

    ca.get("/registry/perform_update?peer=n2:5002")
    assert digest(ca) == digest(cb)
    assert digest(ca)["entries"] == 2  # x:1 and n1:5001 itself

    register(cb, "x:1", "api")
    assert digest(ca)["digest"] != digest(cb)["digest"]
    assert digest(ca)["entries"] == digest(cb)["entries"]


def test_digest_ignores_the_local_lease_clock(make_node):
    a = make_node("n1:5001")
    b = make_node("n2:5002", clock=FakeClock(start=5_000.0))
    ca, cb = create_app(node=a).test_client(), create_app(node=b).test_client()
    register(ca, "x:1")
    a.exchange("n2:5002")

    assert digest(ca) == digest(cb)
    assert held(ca)["x:1"]["seen_at"] != held(cb)["x:1"]["seen_at"]


def test_perform_update_moves_an_entry_and_reports_it(pair):
    a, b, ca, cb = pair
    register(ca, "x:1", "web")

    resp = ca.get("/registry/perform_update?peer=n2:5002")

    assert resp.status_code == 200
    report = resp.get_json()
    assert report["node"] == "n1:5001"
    assert report["peers"] == ["n2:5002"]
    assert (report["sent"], report["received"]) == (2, 0)  # x:1 and n1:5001 pushed
    [x] = report["exchanges"]
    assert x["ok"] is True and x["peer"] == "n2:5002"
    assert x["bytes_sent"] > 0 and x["bytes_received"] > 0
    assert listing(cb)["x:1"] == listing(ca)["x:1"]

    register(cb, "y:1", "db")
    report = ca.get("/registry/perform_update?peer=n2:5002").get_json()
    assert (report["sent"], report["received"]) == (0, 1)
    assert listing(ca)["y:1"]["app_name"] == "db"


def test_perform_update_without_peer_contacts_the_seed(make_node, clock):
    make_node("n2:5002")
    a = make_node("n1:5001", seeds=("n2:5002",))

    report = create_app(node=a).test_client().get("/registry/perform_update").get_json()

    assert report["peers"] == ["n2:5002"]
    assert report["exchanges"][0]["ok"] is True


def test_perform_update_reports_a_cut_link_as_failed(pair, net):
    a, b, ca, cb = pair
    net.cut("n1:5001", "n2:5002")

    report = ca.get("/registry/perform_update?peer=n2:5002").get_json()

    [x] = report["exchanges"]
    assert x["ok"] is False and "unreachable" in x["error"]
    assert (report["sent"], report["received"]) == (0, 0)
    assert listing(cb) == {}


@pytest.mark.parametrize("peer", ["nope", "a:0", "a:b", "a:70000"])
def test_perform_update_rejects_a_bad_peer(client, peer):
    assert_json_error(client.get(f"/registry/perform_update?peer={peer}"), 400)


def test_deregistration_spreads_by_gossip(pair):
    a, b, ca, cb = pair
    register(ca, "x:1")
    ca.get("/registry/perform_update?peer=n2:5002")
    cb.post("/registry/deregister_instance", json={"address": "x:1"})

    ca.get("/registry/perform_update?peer=n2:5002")

    assert "x:1" not in listing(ca)
    assert held(ca)["x:1"]["deleted"] is True


def test_skewed_peer_future_last_update_is_accepted_by_gossip(make_node, clock):
    skewed = make_node("n1:5001", clock=FakeClock(offset=3600))
    b = make_node("n2:5002")
    cs, cb = create_app(node=skewed).test_client(), create_app(node=b).test_client()
    assert register(cs, "x:1").get_json()["last_update"] == T0 + 3600

    # A client may not send such a stamp to b directly ...
    assert_json_error(register(cb, "x:1", last_update=T0 + 3600), 400)
    # ... but the skewed node's write reaches b by gossip unchanged.
    skewed.exchange("n2:5002")
    assert listing(cb)["x:1"]["last_update"] == T0 + 3600


# -- ops: /health, /metrics, /admin/clock ---------------------------------------------------


def test_health(client, node):
    register(client, "a:1")
    resp = client.get("/health")

    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok", "address": "n1:5001", "entries": 1, "peers": 0,
                               "last_round_age": None, "last_round_failures": None, "store_writable": True}


def test_metrics_after_some_activity(pair, net):
    a, b, ca, cb = pair
    register(ca, "x:1")
    register(ca, "y:1")
    ca.post("/registry/deregister_instance", json={"address": "y:1"})

    [x] = ca.get("/registry/perform_update?peer=n2:5002").get_json()["exchanges"]  # pushes n1:5001, x:1, y:1
    register(cb, "z:1")
    [y] = b.run_round(["n1:5001"])  # b pushes n2:5002 and z:1 to a, which answers
    net.cut("n1:5001", "n2:5002")
    ca.get("/registry/perform_update?peer=n2:5002")  # fails

    m = metrics(ca)
    assert m["sd_gossip_rounds_total"] == 2
    assert m["sd_gossip_exchanges_failed_total"] == 1
    assert m["sd_gossip_exchanges_ok_total"] == 1
    # a counts its own exchange and b's, each message once, as the transport measured it.
    assert m["sd_gossip_bytes_sent_total"] == x["bytes_sent"] + y.bytes_received > 0
    assert m["sd_gossip_bytes_received_total"] == x["bytes_received"] + y.bytes_sent > 0
    assert m["sd_gossip_merges_applied_total"] == 2
    assert m["sd_registry_entries"] == 4  # n1:5001, x:1, n2:5002, z:1
    assert m["sd_registry_tombstones"] == 1
    assert m["sd_gossip_known_peers"] == 1


def test_metrics_of_a_fresh_node_are_zero(client):
    m = metrics(client)
    for name in (
        "sd_gossip_rounds_total", "sd_gossip_exchanges_failed_total", "sd_gossip_bytes_sent_total",
        "sd_gossip_bytes_received_total", "sd_gossip_merges_applied_total", "sd_registry_entries",
        "sd_registry_tombstones", "sd_gossip_known_peers", "sd_gossip_local_health",
    ):
        assert m[name] == 0, name


def test_known_peers_gauge_drops_when_the_peer_is_marked_down(pair, clock, net):
    a, b, ca, cb = pair
    b.run_round(["n1:5001"])
    clock.advance(10 * a.config.ttl)  # node entries are not leased: still a peer
    assert metrics(ca)["sd_gossip_known_peers"] == 1

    net.set_down("n2:5002")
    for _ in range(a.config.probe_waves):  # no other peer to ask: the direct pings decide
        a.run_round(["n2:5002"])
    m = metrics(ca)
    assert m["sd_gossip_known_peers"] == 0
    assert (m["sd_gossip_suspicions_total"], m["sd_gossip_down_marks_total"]) == (1, 1)
    assert "n2:5002" not in listing(ca) and held(ca)["n2:5002"]["deleted"] is True


def test_admin_clock_sets_the_offset_used_for_stamps(client, clock):
    resp = client.post("/admin/clock", json={"offset": 600})

    assert resp.status_code == 200
    assert resp.get_json() == {"offset": 600.0, "wall": T0 + 600.0}
    assert client.get("/admin/clock").get_json()["offset"] == 600.0
    assert register(client, "a:1").get_json()["last_update"] == T0 + 600
    assert metrics(client)["sd_clock_offset_seconds"] == 600


@pytest.mark.parametrize("body", [{"offset": "x"}, {"offset": True}, {"offset": 1e12}, {}, [600], None])
def test_admin_clock_rejects_bad_offsets(client, body):
    assert_json_error(client.post("/admin/clock", data=json.dumps(body)), 400)
    assert client.get("/admin/clock").get_json()["offset"] == 0.0


# -- bad input: 4xx JSON, nothing stored, still serving ------------------------------------------


@pytest.fixture
def seeded(client):
    """A client whose node already holds one entry, so 'unchanged' means something."""
    assert register(client, "keep:1", "web").status_code == 201
    return client


def observed(client):
    return listing(client), digest(client), held(client)


def assert_rejected(client, resp, status):
    before = observed(client)
    assert_json_error(resp, status)
    assert observed(client) == before
    assert register(client, "after:1", "web").status_code == 201  # still serving


NOT_JSON_OBJECTS = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b"[1, 2]", id="list"),
    pytest.param(b'"a:1"', id="string"),
    pytest.param(b"null", id="null"),
    pytest.param(b"42", id="number"),
    pytest.param(b"\xff\xfe{", id="not-utf8"),
    pytest.param(b'{"a":' * 2000 + b"1" + b"}" * 2000, id="deeply-nested-object"),
    pytest.param(b"[" * 5000 + b"]" * 5000, id="deeply-nested-list"),
]

BAD_REGISTRATIONS = [
    pytest.param({"app_name": "web"}, id="missing-address"),
    pytest.param({"address": "a:1"}, id="missing-app_name"),
    pytest.param({"address": 123, "app_name": "web"}, id="address-int"),
    pytest.param({"address": None, "app_name": "web"}, id="address-null"),
    pytest.param({"address": ["a:1"], "app_name": "web"}, id="address-list"),
    pytest.param({"address": "a:1", "app_name": []}, id="app_name-list"),
    pytest.param({"address": "a:1", "app_name": 7}, id="app_name-int"),
    pytest.param({"address": "a:1", "app_name": None}, id="app_name-null"),
    pytest.param({"address": "a:1", "app_name": "web", "last_update": "x"}, id="last_update-string"),
    pytest.param({"address": "a:1", "app_name": "web", "last_update": True}, id="last_update-bool"),
    pytest.param({"address": "a:1", "app_name": "web", "last_update": [1]}, id="last_update-list"),
    pytest.param({"address": "a:1", "app_name": "web", "last_update": -1}, id="last_update-negative"),
    pytest.param({"address": "a:1", "app_name": "web", "last_update": float("nan")}, id="last_update-NaN"),
    pytest.param({"address": "a:1", "app_name": "web", "last_update": float("inf")}, id="last_update-Infinity"),
    pytest.param({"address": "a:1", "app_name": "web", "last_update": float("-inf")}, id="last_update-minus-Infinity"),
    pytest.param({"address": "a:1", "app_name": "web", "last_update": 10**30}, id="last_update-huge"),
    pytest.param({"address": "host", "app_name": "web"}, id="address-no-port"),
    pytest.param({"address": "host:", "app_name": "web"}, id="address-empty-port"),
    pytest.param({"address": "host:0", "app_name": "web"}, id="address-port-0"),
    pytest.param({"address": "host:65536", "app_name": "web"}, id="address-port-65536"),
    pytest.param({"address": "host:70000", "app_name": "web"}, id="address-port-70000"),
    pytest.param({"address": "host:-1", "app_name": "web"}, id="address-port-negative"),
    pytest.param({"address": "a:b", "app_name": "web"}, id="address-port-not-number"),
    pytest.param({"address": "", "app_name": "web"}, id="address-empty"),
    pytest.param({"address": ":80", "app_name": "web"}, id="address-no-host"),
    pytest.param({"address": "a b:80", "app_name": "web"}, id="address-space"),
    pytest.param({"address": "a:80\n", "app_name": "web"}, id="address-trailing-newline"),
    pytest.param({"address": "a:1", "app_name": ""}, id="app_name-empty"),
    pytest.param({"address": "a:1", "app_name": "   \t"}, id="app_name-whitespace"),
    pytest.param({"address": "a:1", "app_name": "x" * 256}, id="app_name-too-long"),
    pytest.param({"address": "a:1", "app_name": "we\x00b"}, id="app_name-nul"),
    pytest.param({"address": "a:1", "app_name": "we\nb"}, id="app_name-newline"),
    pytest.param({"address": "a:1", "app_name": "web\x1b[31m"}, id="app_name-escape"),
    pytest.param({"address": "a:1", "app_name": "we\u200bb"}, id="app_name-zero-width"),
]


@pytest.mark.parametrize("path", ["/registry/register_instance", "/register/register_instance",
                                  "/registry/deregister_instance", "/admin/clock"])
@pytest.mark.parametrize("data", NOT_JSON_OBJECTS)
def test_body_that_is_not_a_json_object_is_rejected(seeded, path, data):
    assert_rejected(seeded, seeded.post(path, data=data, content_type="application/json"), 400)


@pytest.mark.parametrize("body", BAD_REGISTRATIONS)
def test_bad_registration_is_rejected(seeded, body):
    # json.dumps writes NaN/Infinity literals, which Flask's parser reads back as floats.
    assert_rejected(seeded, seeded.post("/registry/register_instance", data=json.dumps(body),
                                        content_type="application/json"), 400)


@pytest.mark.parametrize("address", [123, None, "host", "host:0", "host:70000", "a:b", "", "a:80\n"])
def test_bad_deregistration_is_rejected(seeded, address):
    assert_rejected(seeded, seeded.post("/registry/deregister_instance", json={"address": address}), 400)


def test_bad_registration_does_not_overwrite_an_existing_entry(seeded):
    assert_rejected(seeded, register(seeded, "keep:1", ""), 400)
    assert listing(seeded)["keep:1"]["app_name"] == "web"


def test_app_name_of_255_characters_is_accepted(client):
    assert register(client, "a:1", "x" * 255).status_code == 201


def test_oversized_body_is_refused_with_413(seeded, node):
    body = json.dumps({"address": "a:1", "app_name": "web", "pad": "x" * node.config.max_body})
    assert_rejected(seeded, seeded.post("/registry/register_instance", data=body,
                                        content_type="application/json"), 413)


def test_body_without_json_content_type_is_still_parsed(client):
    resp = client.post("/registry/register_instance", data=json.dumps({"address": "a:1", "app_name": "web"}),
                       content_type="text/plain")
    assert resp.status_code == 201


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=5
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional={
    "address": st.sampled_from(["a:1", "10.0.0.1:8080", "[::1]:80", "a:0", "a", ""]) | JSON_VALUES,
    "app_name": st.text(max_size=300) | JSON_VALUES,
    "last_update": st.integers(-5, T0 + 120) | JSON_VALUES,
}))
def test_any_registration_body_gets_2xx_or_a_json_400(client, body):
    resp = client.post("/registry/register_instance", data=json.dumps(body), content_type="application/json")

    assert resp.status_code in (200, 201, 400), resp.data[:300]
    if resp.status_code == 400:
        assert_json_error(resp, 400)
    else:
        assert listing(client)[body["address"]]["app_name"] == body["app_name"]


# -- POST /gossip ------------------------------------------------------------------------------


def entry_wire(address="g:1", app_name="web", last_update=T0, version=5, origin="n9:1", deleted=0, age=0.0):
    return [address, app_name, last_update, version, origin, deleted, age]


BAD_GOSSIP = [
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"", id="empty"),
    pytest.param(b"[]", id="list"),
    pytest.param(b'"sum"', id="string"),
    pytest.param(b"null", id="null"),
    pytest.param(b"[" * 5000 + b"]" * 5000, id="deeply-nested"),
    pytest.param({}, id="no-type"),
    pytest.param({"type": "bogus"}, id="unknown-type"),
    pytest.param({"type": "syn", "digest": [["other:1", 3, "n9:1"]]}, id="syn-retired"),
    pytest.param({"v": 2, "type": "sum", "from": "n9:1", "buckets": ["0"]}, id="version-2"),
    pytest.param({"v": "1", "type": "sum", "from": "n9:1", "buckets": ["0"]}, id="version-string"),
    pytest.param({"type": "sum", "buckets": "nope"}, id="sum-buckets-string"),
    pytest.param({"type": "sum", "buckets": ["zz"]}, id="sum-bucket-not-hex"),
    pytest.param({"type": "ack"}, id="ack-no-entries"),
    pytest.param({"type": "ack", "entries": {"g:1": 1}}, id="ack-entries-object"),
    pytest.param({"type": "ack", "entries": [entry_wire()[:6]]}, id="ack-entry-short"),
    pytest.param({"type": "ack", "entries": [entry_wire() + [1]]}, id="ack-entry-long"),
    pytest.param({"type": "ack", "entries": ["g:1"]}, id="ack-entry-string"),
    pytest.param({"type": "ack", "entries": [entry_wire(version=0)]}, id="ack-version-0"),
    pytest.param({"type": "ack", "entries": [entry_wire(version="5")]}, id="ack-version-string"),
    pytest.param({"type": "ack", "entries": [entry_wire(version=True)]}, id="ack-version-bool"),
    pytest.param({"type": "ack", "entries": [entry_wire(version=5.5)]}, id="ack-version-float"),
    pytest.param({"type": "ack", "entries": [entry_wire(address=5)]}, id="ack-address-int"),
    pytest.param({"type": "ack", "entries": [entry_wire(origin=None)]}, id="ack-origin-null"),
    pytest.param({"type": "ack", "entries": [entry_wire(deleted=2)]}, id="ack-deleted-2"),
    pytest.param({"type": "ack", "entries": [entry_wire(age=-1)]}, id="ack-age-negative"),
    pytest.param({"type": "ack", "entries": [entry_wire(age="0")]}, id="ack-age-string"),
    pytest.param({"type": "ack", "entries": [entry_wire(last_update="x")]}, id="ack-last_update-string"),
    pytest.param({"type": "ack", "entries": [entry_wire(version=2**63)]}, id="ack-version-beyond-int64"),
    pytest.param({"type": "ack", "entries": [entry_wire(last_update=2**63)]}, id="ack-last_update-beyond-int64"),
    # A malformed item after a good one: the whole message is refused, nothing applied.
    pytest.param({"type": "ack", "entries": [entry_wire(), entry_wire(address="h:1", version=0)]}, id="ack-one-bad"),
]


@pytest.mark.parametrize("message", BAD_GOSSIP)
def test_malformed_gossip_is_rejected_with_400(seeded, message):
    data = message if isinstance(message, bytes) else json.dumps(message)
    assert_rejected(seeded, seeded.post("/gossip", data=data, content_type="application/json"), 400)


def test_gossip_ack_applies_entries_and_counts_them(client):
    data = json.dumps({"type": "ack", "from": "n9:1", "entries": [entry_wire()]})
    resp = client.post("/gossip", data=data, content_type="application/json")

    assert resp.status_code == 200
    assert resp.get_json() == {"v": 1, "applied": 1}
    assert listing(client)["g:1"] == {"app_name": "web", "last_update": T0, "status": "healthy", "version": 5}
    m = metrics(client)
    assert m["sd_gossip_merges_applied_total"] == 1
    assert m["sd_gossip_bytes_received_total"] >= len(data)
    assert m["sd_gossip_bytes_sent_total"] >= len(resp.data)


def test_gossip_summary_answers_with_the_digest_of_differing_buckets(seeded):
    resp = seeded.post("/gossip", json={"v": 1, "type": "sum", "from": "n9:1", "buckets": ["0"]})

    assert resp.status_code == 200
    assert resp.get_json() == {"v": 1, "buckets": [0], "digest": [["keep:1", 1, "n1:5001"]]}


def test_gossip_from_a_node_before_versions_is_answered(seeded):
    """No "v": the message of an older node, read as version 1 (rolling upgrades)."""
    resp = seeded.post("/gossip", json={"type": "ack", "from": "n9:1", "entries": [], "want": ["keep:1"]})

    assert resp.status_code == 200
    [entry] = resp.get_json()["entries"]
    assert entry[:2] == ["keep:1", "web"]


def test_gossip_body_larger_than_client_limit_is_accepted(client, node):
    entries = [entry_wire(address=f"host-{i}:80", app_name="x" * 40) for i in range(300)]
    data = json.dumps({"type": "ack", "from": "n9:1", "entries": entries})
    assert len(data) > node.config.max_body

    resp = client.post("/gossip", data=data, content_type="application/json")
    assert resp.status_code == 200
    assert resp.get_json() == {"v": 1, "applied": 300}


def test_gossip_body_beyond_max_gossip_body_is_refused(make_node):
    n = make_node("n3:5003", max_gossip_body=1000)
    c = create_app(node=n).test_client()
    entries = [entry_wire(address=f"host-{i}:80") for i in range(50)]

    assert_json_error(c.post("/gossip", data=json.dumps({"type": "ack", "entries": entries}),
                             content_type="application/json"), 413)
    assert listing(c) == {}


def test_gossip_with_the_largest_version_does_not_break_later_registrations(seeded):
    """One peer message must not leave the node unable to take writes."""
    seeded.post("/gossip", json={"type": "ack", "from": "n9:1", "entries": [entry_wire(version=2**63 - 1)]})

    resp = register(seeded, "later:1")
    assert resp.status_code == 201, resp.data[:300]


# -- routing errors ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/nope", "/registry", "/registry/lists", "/register/list"])
def test_unknown_route_is_json_404(client, path):
    assert_json_error(client.get(path), 404)


@pytest.mark.parametrize("method, path", [
    ("get", "/registry/register_instance"),
    ("get", "/registry/deregister_instance"),
    ("post", "/registry/list"),
    ("delete", "/registry/list"),
    ("put", "/registry/register_instance"),
    ("get", "/gossip"),
    ("post", "/health"),
])
def test_wrong_method_is_json_405(client, method, path):
    assert_json_error(getattr(client, method)(path), 405)
