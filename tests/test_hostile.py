"""Hostile clusters, on real loopback node processes: a flood of fake peers, floods of connections."""

from __future__ import annotations

import resource
import socket
import time

import pytest
import requests

from harness.localnode import cluster_of, stop_all
from harness.wait import wait_until
from node import wire
from node.keyring import Keyring, generate_key, parse_keys
from node.protocol import NODE_APP, Entry
from node.transport import HttpTransport

KEY = generate_key()
FLAGS = ("--preset", "local", "--interval", "0.1", "--gossip-keys", KEY)
FAKES = 10_000


def joined(n: int, folder):
    """Yield ``n`` keyed node processes seeded in a chain once each knows all the others; stop them after."""
    procs = cluster_of(n, *FLAGS, folder=folder)
    try:
        assert wait_until(lambda: all(len(known_nodes(p)) == n for p in procs), timeout=10).ok
        yield procs
    finally:
        stop_all(procs)


@pytest.fixture
def trio(tmp_path):
    """Three keyed nodes seeded in a chain, their membership converged."""
    yield from joined(3, tmp_path)


def known_nodes(proc) -> set[str]:
    try:
        return {a for a, e in proc.get("/registry/list").items() if e["app_name"] == NODE_APP}
    except requests.RequestException:
        return set()


def fake_peers(count: int) -> list[Entry]:
    """Node entries for loopback addresses where nothing listens (port 9 of 127.77.x.y)."""
    now = time.time()
    return [Entry(f"127.77.{i // 250}.{i % 250 + 1}:9", NODE_APP, int(now), 5, "127.77.255.1:9", False, now)
            for i in range(count)]


def registered_everywhere(procs, address: str) -> bool:
    try:
        return all(address in p.get("/registry/list") for p in procs)
    except requests.RequestException:
        return False


def refused_new_peers(proc) -> float:
    text = requests.get(proc.url + "/metrics", timeout=2).text
    metric = 'sd_gossip_entries_refused_total{reason="new_peer_limit"}'
    line = next(x for x in text.splitlines() if x.startswith(metric))
    return float(line.split()[-1])


def test_one_message_of_fake_peers_does_not_eclipse_the_real_ones(trio):
    n1, n2, n3 = trio
    signed = HttpTransport(keyring=Keyring(parse_keys([KEY])))  # an insider: the cluster's own key
    push = wire.Push("127.77.255.1:9", fake_peers(FAKES), [])
    assert "applied" in signed.send(n1.address, wire.encode(push, time.time()), timeout=10).body

    # A registration at the flooded node still reaches every real node within seconds...
    n1_url = n1.url + "/registry/register_instance"
    assert requests.post(n1_url, json={"address": "10.3.0.1:80", "app_name": "web"}, timeout=2).status_code == 201
    reached = wait_until(lambda: registered_everywhere(trio, "10.3.0.1:80"), timeout=5)
    assert reached.ok, f"not on every node after 5 s: {reached.last}"
    # ...as it does once the fakes the bound let in have spread to the other nodes too.
    time.sleep(3)
    assert requests.post(n1_url, json={"address": "10.3.0.2:80", "app_name": "web"}, timeout=2).status_code == 201
    reached = wait_until(lambda: registered_everywhere(trio, "10.3.0.2:80"), timeout=5)
    assert reached.ok, f"not on every node 5 s after the fakes spread: {reached.last}"
    assert refused_new_peers(n1) >= FAKES - 128


# -- connection floods ------------------------------------------------------------------------------

FLOOD = 1_100


@pytest.fixture
def pair(tmp_path):
    """Two keyed nodes, n2 seeded with n1, each knowing the other."""
    yield from joined(2, tmp_path)


@pytest.fixture
def sockets():
    """A list for the flood's sockets, closed afterwards; this process may hold a few thousand."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FLOOD + 512
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"the open-files limit ({hard}) is below the {want} this flood needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def flood(proc, socks: list[socket.socket], count: int, first_bytes: bytes = b"") -> None:
    """Open ``count`` connections to ``proc`` and send each ``first_bytes`` (none: idle)."""
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", proc.port), timeout=5)
        if first_bytes:
            s.sendall(first_bytes)
        socks.append(s)


def assert_serves(flooded, other, address: str) -> None:
    """Check that ``flooded`` answers /health and a gossip round with ``other``, and a registration crosses."""
    health = requests.get(flooded.url + "/health", timeout=3)
    assert health.status_code == 200, health.text
    round_ = requests.get(flooded.url + "/registry/perform_update", params={"peer": other.address}, timeout=3).json()
    assert all(e["ok"] for e in round_["exchanges"]), round_
    requests.post(other.url + "/registry/register_instance", json={"address": address, "app_name": "web"}, timeout=3)
    assert wait_until(lambda: registered_everywhere([flooded], address), timeout=3).ok


def test_a_node_serves_through_a_flood_of_idle_connections(pair, sockets):
    n1, n2 = pair
    flood(n1, sockets, FLOOD)
    time.sleep(0.5)
    assert n1.running(), n1.log_tail()
    assert_serves(n1, n2, "10.4.0.1:80")


PARTIAL = b"POST /registry/register_instance HTTP/1.1\r\nHost: n1\r\nContent-Length: 64\r\n\r\n{\"addr"


def test_a_node_serves_through_a_flood_of_stalled_half_sent_requests(pair, sockets):
    n1, n2 = pair
    flood(n1, sockets, FLOOD, PARTIAL)
    time.sleep(0.5)
    assert n1.running(), n1.log_tail()
    assert_serves(n1, n2, "10.4.0.2:80")
