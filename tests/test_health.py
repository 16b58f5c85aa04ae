"""/health tells a stalled gossip loop or an unwritable store: 503 "degraded", with the problems named."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from node.app import create_app

KEYS = {"status", "address", "entries", "peers", "last_round_age", "last_round_failures", "store_writable"}


@pytest.fixture
def stalled(node, monkeypatch):
    """``node`` with its gossip loop started, every round stuck until the test ends."""
    release = threading.Event()
    monkeypatch.setattr(node, "run_round", lambda *a, **k: release.wait(10))
    yield node
    release.set()


def stall_after(node) -> float:
    c = node.config
    return max(5 * c.interval, 2 * c.timeout + c.interval)


def test_a_fresh_node_is_healthy_before_its_first_round(stalled, client, clock):
    stalled.start()
    clock.advance(stall_after(stalled) / 2)
    resp = client.get("/health")
    assert resp.status_code == 200
    assert set(resp.get_json()) == KEYS and resp.get_json()["status"] == "ok"


def test_a_stalled_gossip_loop_makes_the_node_degraded(stalled, client, clock):
    stalled.start()
    clock.advance(stall_after(stalled) + 1)
    resp = client.get("/health")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "degraded" and set(body) == KEYS | {"problems"}
    assert any("round" in p for p in body["problems"])


def test_health_reports_the_last_round(node, client, net, clock):
    node.run_round(["gone:1"])  # not on the network: one failure
    clock.advance(2)
    body = client.get("/health").get_json()
    assert body["last_round_age"] == pytest.approx(2)
    assert body["last_round_failures"] == 1


def test_a_failed_store_write_makes_the_node_degraded_until_one_succeeds(node, client, monkeypatch):
    app = create_app(node=node)
    app.testing = False  # the write's error is answered, not raised into the test
    client = app.test_client()
    persist = node.store._persist

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(node.store, "_persist", broken)
    assert client.post("/registry/register_instance", json={"address": "a:1", "app_name": "web"}).status_code >= 500
    resp = client.get("/health")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["store_writable"] is False and any("store" in p for p in body["problems"])

    monkeypatch.setattr(node.store, "_persist", persist)
    assert client.post("/registry/register_instance", json={"address": "a:1", "app_name": "web"}).status_code == 201
    assert client.get("/health").status_code == 200
