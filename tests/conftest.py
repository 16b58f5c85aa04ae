"""Shared fixtures: nodes on a FakeClock and an InMemoryNetwork, each with a temp SQLite file."""

from __future__ import annotations

import contextlib
import dataclasses
import random
import threading
from collections.abc import Iterator

import pytest

from node.__main__ import make_server
from node.app import build_node, create_app
from node.clock import FakeClock
from node.config import TEST
from node.transport import InMemoryNetwork


@pytest.fixture
def clock():
    """A clock that moves only when the test says so."""
    return FakeClock()


@pytest.fixture
def net():
    """An in-memory network that every node made by ``make_node`` joins."""
    return InMemoryNetwork(random.Random(0))


@pytest.fixture
def make_node(tmp_path, clock, net):
    """Return a factory ``make_node(address, clock=..., **config_overrides) -> Node``.

    Each node has its own SQLite file under ``tmp_path``, serves ``address`` on ``net``,
    runs exchanges sequentially and picks peers with a seeded RNG. Admin endpoints are on
    (the API tests set the clock); ``enable_admin=False`` turns them off.
    """
    made = []

    def make(address="n1:5001", *, clock=clock, **overrides):
        host, port = address.rsplit(":", 1)
        overrides.setdefault("enable_admin", True)
        config = dataclasses.replace(
            TEST, port=int(port), advertise=address, db=str(tmp_path / f"{host}-{port}.db"), **overrides
        ).validate()
        node = build_node(config, clock=clock, transport=None, rng=random.Random(0), parallel=False)
        node.transport = net.attach(address, node)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()
        node.store.close()


@pytest.fixture
def node(make_node):
    """The node ``n1:5001`` that ``app`` serves."""
    return make_node("n1:5001")


@pytest.fixture
def app(node):
    return create_app(node=node)


@pytest.fixture
def client(app):
    return app.test_client()


@contextlib.contextmanager
def serving(srv) -> Iterator[int]:
    """Run the waitress server ``srv`` in a daemon thread; yield its port; close it and its workers after."""
    threading.Thread(target=srv.run, daemon=True).start()
    try:
        yield srv.effective_port
    finally:
        srv.close()
        srv.task_dispatcher.shutdown()


@pytest.fixture
def server(node):
    """The node served by waitress as ``python -m node`` serves it, on a free port; yields its port."""
    with serving(make_server(node, "127.0.0.1", 0)) as port:
        yield port
