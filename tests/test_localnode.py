"""The local node toolkit: free ports, one node process, a seeded chain, start errors with logs."""

from __future__ import annotations

import socket

import pytest

from harness.errors import NodeStartError
from harness.localnode import NodeProcess, answers_health, chain, free_port


def test_free_port_can_be_bound_on_loopback():
    port = free_port()
    with socket.socket() as s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        s.bind(("127.0.0.1", port))
        u.bind(("127.0.0.1", port))
    assert 1024 <= port <= 65535


def test_chain_seeds_each_node_with_the_one_before():
    addresses = ["a:1", "b:2", "c:3"]
    assert [chain(i, addresses) for i in range(3)] == [[], ["a:1"], ["b:2"]]


def test_node_process_answers_then_stops_and_removes_its_files():
    with NodeProcess("--preset", "local", name="solo") as node:
        assert answers_health(node.url)
        assert node.get("/health")["address"] == node.address
        folder = node.db.parent
        assert node.db.exists() and "solo" in node.log.name
    assert not node.running() and not answers_health(node.url, timeout=0.2)
    assert not folder.exists()


def test_node_that_exits_raises_node_start_error_with_its_log(tmp_path):
    node = NodeProcess("--fanout", "nope", name="bad", db=tmp_path / "bad.db", log=tmp_path / "bad.log")
    with pytest.raises(NodeStartError) as err:
        node.start()
    assert "bad on 127.0.0.1" in str(err.value) and "exited" in str(err.value)
    assert "fanout" in err.value.logs["bad"]
    assert not node.running()
