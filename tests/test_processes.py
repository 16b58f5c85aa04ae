"""Real `python -m node` processes on 127.0.0.1: convergence, kill -9 and restart."""

from __future__ import annotations

import sqlite3

import pytest
import requests

from harness.localnode import cluster_of, stop_all
from harness.wait import wait_until

FLAGS = ("--preset", "local", "--interval", "0.1")


@pytest.fixture
def chain(tmp_path):
    """Three nodes seeded in a chain: n1 <- n2 <- n3."""
    procs = cluster_of(3, *FLAGS, folder=tmp_path)
    try:
        yield procs
    finally:
        stop_all(procs)


def converged(procs, present=(), absent=()) -> bool:
    try:
        digests = {p.get("/registry/digest")["digest"] for p in procs}
        views = [p.get("/registry/list") for p in procs]
    except requests.RequestException:
        return False
    return (len(digests) == 1 and all(a in v for v in views for a in present)
            and not any(a in v for v in views for a in absent))


def test_chain_converges_and_survives_kill9(chain):
    n1, n2, n3 = chain
    r = requests.post(n3.url + "/registry/register_instance", json={"address": "10.2.0.1:8080", "app_name": "api"},
                      timeout=2)
    assert r.status_code == 201
    assert wait_until(lambda: converged(chain, ["10.2.0.1:8080", n1.address, n3.address]), timeout=10).ok
    assert n1.get("/registry/list")["10.2.0.1:8080"]["app_name"] == "api"

    n2.kill()
    requests.post(n1.url + "/registry/register_instance", json={"address": "10.2.0.2:8080", "app_name": "db"},
                  timeout=2)
    requests.post(n3.url + "/registry/deregister_instance", json={"address": "10.2.0.1:8080"}, timeout=2)
    assert wait_until(lambda: converged([n1, n3], ["10.2.0.2:8080"], ["10.2.0.1:8080"]), timeout=10).ok

    # Its SQLite file still holds what it had acknowledged before kill -9...
    with sqlite3.connect(n2.db) as db:
        rows = dict(db.execute("SELECT address, app_name FROM entry WHERE deleted = 0"))
    assert rows.get("10.2.0.1:8080") == "api" and n1.address in rows and n3.address in rows
    n2.start()
    # ...and once restarted on that file it catches up on the registration and the deletion it missed.
    assert wait_until(lambda: converged(chain, ["10.2.0.2:8080"], ["10.2.0.1:8080"]), timeout=10).ok
