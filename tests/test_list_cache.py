"""GET /registry/list from cached bytes: never stale as time passes, rebuilt only when something changed."""

from __future__ import annotations

import json
import random

import pytest
from flask import jsonify

from node import registry
from node.protocol import Lease
from tests.test_api import T0, listing, register


def fresh_listing(app, node, query: dict[str, str] | None = None) -> bytes:
    """The listing as the route built it before caching: every live entry's view, in address order."""
    query = query or {}
    now = node.clock.now()
    out = {}
    with app.app_context():
        for address, e in sorted(node.listing().items()):
            view = registry.entry_view(e, now)
            if all(view[k] == v for k, v in query.items()):
                out[address] = view
        return jsonify(out).get_data()


@pytest.fixture
def builds(monkeypatch):
    """Count the listings built (each one serializes the whole table)."""
    calls: list[float] = []
    real = registry.build_listing

    def counting(snap, now: float, lease: Lease):
        calls.append(now)
        return real(snap, now, lease)

    monkeypatch.setattr(registry, "build_listing", counting)
    return calls


def test_the_same_snapshot_is_serialized_once_within_its_status_window(client, clock, builds):
    register(client, "a:1")
    first = client.get("/registry/list").data
    clock.advance(1)
    assert client.get("/registry/list").data == first
    assert client.get("/registry/list?app_name=web").data == first
    assert len(builds) == 1


def test_a_write_is_listed_at_once(client, clock):
    register(client, "a:1")
    assert set(listing(client)) == {"a:1"}
    register(client, "b:1", app_name="db")
    assert listing(client)["b:1"]["app_name"] == "db"
    client.post("/registry/deregister_instance", json={"address": "a:1"})
    assert set(listing(client)) == {"b:1"}


def test_status_changes_with_time_alone_at_the_exact_instants(client, clock, node, builds):
    """No write happens: only the clock moves, across the healthy -> expired -> gone edges."""
    register(client, "a:1")
    ttl, grace = node.config.ttl, node.config.expire_grace
    expected = [
        (T0 + ttl - 0.001, "healthy"),
        (T0 + ttl, "expired"),
        (T0 + ttl + grace - 0.001, "expired"),
        (T0 + ttl + grace, None),
    ]
    listing(client)
    for t, status in expected:
        clock.set(t)
        got = listing(client)
        assert got.get("a:1", {}).get("status") == status, (t - T0, got)
        assert listing(client, "?status=healthy").keys() == ({"a:1"} if status == "healthy" else set())
        assert listing(client, "?status=expired").keys() == ({"a:1"} if status == "expired" else set())
    assert len(builds) == 3  # one per status window entered (healthy, expired, gone), not one per request


def test_a_clock_read_before_the_window_rebuilds(client, clock, node):
    register(client, "a:1")
    clock.set(T0 + node.config.ttl)
    assert listing(client)["a:1"]["status"] == "expired"
    clock.set(T0 + node.config.ttl - 1)  # a reading taken earlier, served later
    assert listing(client)["a:1"]["status"] == "healthy"


def test_an_entry_with_another_window_bounds_the_cache(client, clock, node):
    register(client, "a:1")
    clock.advance(2)
    register(client, "b:1")  # its edges come 2 s after a's
    clock.set(T0 + node.config.ttl + 1)
    assert {a: v["status"] for a, v in listing(client).items()} == {"a:1": "expired", "b:1": "healthy"}
    clock.set(T0 + node.config.ttl + 2)
    assert {a: v["status"] for a, v in listing(client).items()} == {"a:1": "expired", "b:1": "expired"}


def test_cached_bytes_equal_a_fresh_serialization_after_random_writes_and_time(app, client, clock, node):
    rng = random.Random(7)
    addresses = [f"10.0.0.{i}:80" for i in range(12)]
    queries: list[dict[str, str]] = [{}, {"app_name": "web"}, {"status": "expired"},
                                     {"app_name": "db", "status": "healthy"}]
    for step in range(300):
        roll = rng.random()
        if roll < 0.45:
            register(client, rng.choice(addresses), app_name=rng.choice(["web", "db"]))
        elif roll < 0.55:
            client.post("/registry/deregister_instance", json={"address": rng.choice(addresses)})
        elif roll < 0.65:
            node.run_round([])  # renews itself and sweeps what is gone
        else:
            clock.advance(rng.choice([0.0, 0.4, 1.0, 3.0, 6.0]))
        query = rng.choice(queries)
        path = "/registry/list" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
        got = client.get(path)
        assert got.status_code == 200 and got.mimetype == "application/json"
        assert got.data == fresh_listing(app, node, query), (step, path)
        json.loads(got.data)
