"""Hostile input: whatever a client or a peer sends, a clear JSON error and nothing half-written."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sqlite3
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node import wire
from node.__main__ import server_body_limit
from node.app import create_app
from node.config import TEST, ConfigError, from_args
from node.protocol import MAX_INT, Entry, Lease
from node.store import SqliteStore
from node.transport import TransportError
from tests.test_config import run_node

# -- addresses and numbers in client requests ----------------------------------------------------


def register(client, address, **more):
    return client.post("/registry/register_instance", json={"address": address, "app_name": "web", **more})


def listed(client):
    return client.get("/registry/list").get_json()


def test_a_last_update_too_large_for_any_integer_type_is_a_400(client):
    r = register(client, "10.7.0.1:80", last_update=10**400)
    assert r.status_code == 400
    assert r.get_json()["error"] == "bad_request" and "last_update" in r.get_json()["message"]
    assert listed(client) == {}


@pytest.mark.parametrize("address", [
    "10.7.0.1:\u0668\u0660",  # Arabic-Indic digits
    "10.7.0.1:\uff18\uff10",  # full-width digits
    "[:]:80", "[]:80", "[::1::2]:80", "[1.2.3.4]:80",
    "999.999.999.999:80", "10.0.0.256:80", "1.2.3:80", "10.0.0.01:80",
    "10.7.0.1:000000080", "10.7.0.1:0", "10.7.0.1:65536",
])
def test_an_invalid_address_is_refused_with_400_and_nothing_stored(client, address):
    r = register(client, address)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"] == "bad_request" and "address" in r.get_json()["message"]
    assert listed(client) == {}


@pytest.mark.parametrize("spellings, canonical", [
    (["10.7.0.1:00080", "10.7.0.1:080", "10.7.0.1:80"], "10.7.0.1:80"),
    (["[0:0::1]:80", "[::0001]:80", "[::1]:80"], "[::1]:80"),
    (["[2001:DB8::A]:443", "[2001:db8:0:0:0:0:0:a]:443"], "[2001:db8::a]:443"),
])
def test_spellings_of_one_address_are_one_instance(client, spellings, canonical):
    for address in spellings:
        r = register(client, address)
        assert r.status_code in (200, 201), r.get_json()
        assert r.get_json()["address"] == canonical
    assert list(listed(client)) == [canonical]
    r = client.post("/registry/deregister_instance", json={"address": spellings[0]})
    assert r.get_json()["address"] == canonical and r.get_json()["known"] is True
    assert listed(client) == {}


@pytest.mark.parametrize("address", ["n1:5000", "localhost:80", "[::1]:80", "10.0.0.7:8080", "node-1.example_x:80"])
def test_valid_addresses_are_stored_as_written(client, address):
    r = register(client, address)
    assert r.status_code == 201 and r.get_json()["address"] == address
    assert list(listed(client)) == [address]


@pytest.mark.parametrize("address", ["10.7.0.1:\u0668\u0660", "999.999.999.999:80", "[:]:80", "10.7.0.1:00080"])
def test_gossip_refuses_the_addresses_clients_cannot_register(make_node, address):
    good = ["10.7.0.2:80", "web", 1, 5, "n1:5000", 0, 0.0]
    for i in (0, 4):  # address, then origin: the entry is dropped, the rest of the message merged
        node = make_node(f"n{i + 2}:5001")
        bad = list(good)
        bad[i] = address
        node.handle({"v": 1, "type": wire.PUSH, "from": "n9:5000", "want": [], "entries": [bad, good]})
        assert set(node.store.snapshot().entries) == {"10.7.0.2:80"}
        assert node.stats.refused["address"] == 1


def test_a_gossip_message_with_only_a_bad_address_changes_nothing(node):
    before = node.store.snapshot().entries
    message = {"v": 1, "type": wire.PUSH, "from": "n9:5000", "want": [],
               "entries": [["999.999.999.999:80", "web", 1, 5, "n9:5000", 0, 0.0]]}
    node.handle(message)
    assert node.store.snapshot().entries == before


def test_config_names_the_one_spelling_peers_accept():
    with pytest.raises(ConfigError, match=r"seed must be written '\[::1\]:80'"):
        from_args(["--port", "5000", "--seeds", "[0::1]:00080"], {})
    with pytest.raises(ConfigError, match="advertise must be HOST:PORT"):
        from_args(["--port", "5000", "--advertise", "999.999.999.999:80"], {})


# -- bodies --------------------------------------------------------------------------------------

HUGE = 400 * 1024 * 1024


@pytest.mark.parametrize("path", ["/registry/register_instance", "/gossip"])
def test_the_server_refuses_a_declared_huge_body_without_waiting_for_it(server, path):
    with socket.create_connection(("127.0.0.1", server), timeout=5) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: n1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {HUGE}\r\n\r\n{{}}".encode())
        head = s.recv(4096)  # a server waiting for the 400 MB would time out here
    assert head.startswith(b"HTTP/1.1 413 "), head


def test_the_server_still_takes_a_gossip_message_as_large_as_the_limit():
    assert server_body_limit(TEST) > TEST.max_gossip_body >= TEST.max_body


@pytest.mark.parametrize("method, path", [
    ("POST", "/registry/register_instance"), ("GET", "/registry/list"), ("POST", "/gossip"),
])
def test_a_declared_body_over_the_limit_is_refused_before_anything_reads_it(client, node, method, path):
    body = io.BytesIO(b"{}")
    r = client.open(path, method=method, environ_overrides={"CONTENT_LENGTH": str(HUGE), "wsgi.input": body})
    assert r.status_code == 413
    assert r.get_json()["error"] == "request_entity_too_large"
    assert body.tell() == 0
    assert client.get("/registry/list").get_json() == {}


def test_a_client_body_over_the_client_limit_is_refused_even_below_the_gossip_limit(client, node):
    r = client.post("/registry/register_instance", data=b" " * (node.config.max_body + 1))
    assert r.status_code == 413 and r.get_json()["error"] == "request_entity_too_large"


def test_a_malformed_content_length_is_a_400(client):
    r = client.get("/registry/list", environ_overrides={"CONTENT_LENGTH": "12x"})
    assert r.status_code == 400 and r.get_json()["error"] == "bad_request"


# -- the database a node starts on ---------------------------------------------------------------


def stored_db(path):
    """Write a database holding one registration, as a node leaves it, and return its path."""
    store = SqliteStore(str(path), Lease(6.0, 6.0, 60.0))
    store.write_local("10.0.0.7:8080", 0.0, 0, "n1:5000", app_name="web")
    store.close()
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_refuses_to_start(db, fragment):
    proc = run_node(["--port", str(free_port()), "--db", str(db), "--preset", "test"])
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the node started on {db}: {err}")
    lines = err.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, err
    assert lines[0].startswith("node: cannot start: ") and fragment in lines[0], err


def sql(db, statement, *args):
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute(statement, args)


def test_a_node_refuses_to_start_on_a_database_it_cannot_write(tmp_path):
    db = stored_db(tmp_path / "r.db")
    with open(db, "r+b") as f:  # header byte 18: a write format this SQLite does not know, so read-only
        f.seek(18)
        f.write(bytes([3]))
    assert_refuses_to_start(db, "readonly")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes a file whatever its mode")
def test_a_node_refuses_to_start_on_a_read_only_database_file(tmp_path):
    db = stored_db(tmp_path / "r.db")
    db.chmod(0o444)
    assert_refuses_to_start(db, "readonly")


@pytest.mark.parametrize("statement, args, fragment", [
    ("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?)", (2**63 - 1,), "clock"),
    ("INSERT OR REPLACE INTO meta (key, value) VALUES ('clock', ?)", ("soon",), "clock"),
    ("UPDATE entry SET version = ?", (2**53,), "version"),
    ("UPDATE entry SET version = ?", ("abc",), "version"),
    ("UPDATE entry SET last_update = ?", (1.5,), "last_update"),
    ("UPDATE entry SET deleted = ?", (7,), "deleted"),
    ("UPDATE entry SET renewed_at = ?", ("x",), "renewed_at"),
    ("UPDATE entry SET origin = ?", (b"n1:5000",), "origin"),
])
def test_a_node_refuses_to_start_on_a_database_with_values_out_of_range(tmp_path, statement, args, fragment):
    db = stored_db(tmp_path / "c.db")
    sql(db, statement, *args)
    assert_refuses_to_start(db, fragment)


def test_entries_stored_under_an_address_spelling_no_longer_accepted_are_left_out(tmp_path):
    db = stored_db(tmp_path / "s.db")
    sql(db, "INSERT INTO entry SELECT '10.7.0.1:00080', app_name, last_update, version, origin, deleted,"
            " renewed_at, seen_at, seen_round FROM entry")
    store = SqliteStore(str(db), Lease(6.0, 6.0, 60.0))
    try:
        assert list(store.snapshot().entries) == ["10.0.0.7:8080"]
    finally:
        store.close()


# -- perform_update?peer= ------------------------------------------------------------------------


class RecordingTransport:
    """A transport that records every peer it is asked to reach, and reaches none."""

    def __init__(self):
        self.peers = []

    def send(self, peer, message, timeout):
        self.peers.append(peer)
        raise TransportError(f"{peer}: not reached in this test")


@pytest.mark.parametrize("peer", ["evil.example:80", "169.254.169.254:80", "n1:5001"])
def test_perform_update_contacts_no_peer_the_node_does_not_know(client, node, peer):
    node.transport = transport = RecordingTransport()
    r = client.get("/registry/perform_update", query_string={"peer": peer})
    assert r.status_code == 403
    assert r.get_json()["error"] == "forbidden" and peer in r.get_json()["message"]
    assert transport.peers == []


def test_perform_update_still_reaches_a_seed_and_a_live_peer(make_node):
    n1 = make_node("n1:5001", seeds=("n2:5002",))
    make_node("n2:5002")
    make_node("n3:5003", seeds=("n2:5002",)).run_round()
    client = create_app(node=n1).test_client()
    r = client.get("/registry/perform_update", query_string={"peer": "n2:5002"})
    assert r.status_code == 200 and r.get_json()["exchanges"][0]["ok"] is True
    assert "n3:5003" in n1.peers()
    r = client.get("/registry/perform_update", query_string={"peer": "n3:5003"})
    assert r.status_code == 200 and r.get_json()["peers"] == ["n3:5003"]


# -- versions ------------------------------------------------------------------------------------


def far_entry(now, version=MAX_INT):
    """A registration of 10.6.6.6:80 renewed at ``now``, of ``version``."""
    return Entry("10.6.6.6:80", "web", 0, version, "n9:5009", False, now)


def test_a_gossiped_version_far_above_the_clock_is_refused_and_replication_goes_on(make_node):
    n1, n2 = make_node("n1:5001", seeds=("n2:5002",)), make_node("n2:5002")
    n1.run_round()
    clock = n1.store.snapshot().clock
    push = {"v": 1, "type": wire.PUSH, "from": "n9:5009", "want": [],
            "entries": [wire.entry_to_wire(far_entry(n1.clock.now()), n1.clock.now())]}
    n1.handle(push)
    assert n1.store.snapshot().clock == clock
    assert "10.6.6.6:80" not in n1.store.snapshot().entries
    assert metric(n1, "sd_gossip_entries_refused_total", reason="version_jump") == 1
    n1.register("10.0.0.9:80", "web")
    assert n1.exchange("n2:5002").ok
    assert "10.0.0.9:80" in n2.listing()


def test_a_pulled_version_far_above_the_clock_is_refused(make_node):
    n1, n3 = make_node("n1:5001"), make_node("n3:5003")
    n3.store.apply([far_entry(n3.clock.now())], n3.clock.now(), 0)  # as if n3 had taken it in before the bound
    clock = n1.store.snapshot().clock
    assert n1.exchange("n3:5003").ok
    assert "10.6.6.6:80" not in n1.store.snapshot().entries and n1.store.snapshot().clock == clock
    assert metric(n1, "sd_gossip_entries_refused_total", reason="version_jump") == 1


def test_a_local_write_at_the_version_limit_is_refused_and_changes_nothing(client, node):
    node.store.apply([far_entry(node.clock.now())], node.clock.now(), 0)
    before = node.store.snapshot()
    r = register(client, "10.0.0.9:80")
    assert r.status_code == 503 and r.get_json()["error"] == "versions_exhausted"
    assert node.store.snapshot() is before


def test_a_version_within_reach_is_taken_in(make_node):
    n1 = make_node("n1:5001")
    n1.merge([far_entry(n1.clock.now(), version=n1.store.snapshot().clock + 2**32)])
    assert "10.6.6.6:80" in n1.store.snapshot().entries


def metric(node, name, **labels):
    text = create_app(node=node).test_client().get("/metrics").get_data(as_text=True)
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == name and s.labels == labels)
