"""Eager push (rumors): news reaches every node before any round, once per node, and only as a Push would."""

from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.sim import SimCluster
from node import rumor, udp, wire
from node.app import build_node, create_app
from node.clock import FakeClock
from node.config import TEST
from node.gossip import lease_of
from node.keyring import REQUEST, Keyring, generate_key, parse_keys
from node.protocol import NODE_APP, Entry
from node.store import Store
from node.transport import Forbidden, TransportError

KEY, STRANGER = generate_key(), generate_key()
ADDRESS = "10.9.0.1:80"


def cluster(make_node, n: int = 6, **overrides) -> list:
    """``n`` nodes on the in-memory network, seeded with each other, run until each has all others as members."""
    addrs = [f"n{i}:500{i}" for i in range(1, n + 1)]
    nodes = [make_node(a, seeds=tuple(x for x in addrs if x != a), **overrides) for a in addrs]
    for _ in range(10):
        for node in nodes:
            node.run_round()
        if all(len(node.member_peers()) == n - 1 for node in nodes):
            return nodes
    raise AssertionError("membership did not form")


def spy(net, monkeypatch) -> list[tuple[str, str, list[str]]]:
    """Record every rumor the network carries as (sender, receiver, addresses), in delivery order."""
    sent: list[tuple[str, str, list[str]]] = []
    deliver = net.deliver

    def recording(src, dst, message, *args, **kwargs):
        if message.get("type") == wire.RUMOR:
            sent.append((src, dst, [e[0] for e in message["entries"]]))
        return deliver(src, dst, message, *args, **kwargs)

    monkeypatch.setattr(net, "deliver", recording)
    return sent


def metric(node, name: str) -> float:
    text = create_app(node=node).test_client().get("/metrics").get_data(as_text=True)
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


# -- spreading ---------------------------------------------------------------------------------------


def test_a_registration_and_its_deregistration_reach_every_node_before_any_round(make_node):
    nodes = cluster(make_node)
    rounds = [n.stats.rounds for n in nodes]
    nodes[2].register(ADDRESS, "web")
    assert [n.address for n in nodes if ADDRESS not in n.listing()] == []
    nodes[4].deregister(ADDRESS)
    assert [n.address for n in nodes if ADDRESS in n.listing()] == []
    assert [n.stats.rounds for n in nodes] == rounds  # no round ran
    assert metric(nodes[2], "sd_gossip_rumors_sent_total") >= 3
    assert sum(metric(n, "sd_gossip_rumors_sent_total") for n in nodes) >= 2 * (len(nodes) - 1)


def test_each_node_forwards_a_write_once_and_never_back_to_where_it_came_from(make_node, net, monkeypatch):
    nodes = cluster(make_node, 8)
    sent = spy(net, monkeypatch)
    nodes[0].register(ADDRESS, "web")
    carrying = [(src, dst) for src, dst, addresses in sent if ADDRESS in addresses]
    per_sender = Counter(src for src, _ in carrying)
    fanout = nodes[0].config.fanout
    assert set(per_sender.values()) == {fanout}  # one spread of `fanout` rumors per node that forwards
    assert len(per_sender) <= len(nodes)
    came_from = {}
    for src, dst in carrying:
        came_from.setdefault(dst, src)
    assert [(src, dst) for src, dst in carrying if came_from.get(src) == dst] == []
    before = len(sent)
    for node in nodes:  # the rounds find nothing new: no rumor of it again
        node.run_round()
    assert len(sent) == before


def test_eager_push_off_sends_no_rumor_and_the_rounds_still_carry_the_write(make_node, net, monkeypatch):
    nodes = cluster(make_node, 4, eager_push=False)
    sent = spy(net, monkeypatch)
    nodes[0].register(ADDRESS, "web")
    assert sent == [] and [n.address for n in nodes if ADDRESS in n.listing()] == [nodes[0].address]
    for _ in range(5):
        for node in nodes:
            node.run_round()
    assert sent == [] and all(ADDRESS in n.listing() for n in nodes)
    assert metric(nodes[0], "sd_gossip_rumors_sent_total") == 0


def test_a_failed_rumor_is_counted_and_does_not_make_the_peer_a_suspect(make_node, net):
    a, b, c = cluster(make_node, 3)
    net.set_down(c.address)
    a.register(ADDRESS, "web")
    assert ADDRESS in b.listing()
    assert a.rumors.stats.failed >= 1 and metric(a, "sd_gossip_rumors_failed_total") >= 1
    assert not a.detector.suspects() and a.stats.suspicions == 0


# -- receiving: the rules of a Push ------------------------------------------------------------------


def rumor_of(*entries: Entry, sender: str = "n2:5002", now: float) -> dict:
    return wire.encode(wire.Rumor(sender, list(entries)), now)


def test_a_rumor_cannot_resurrect_a_deregistration_nor_beat_a_newer_write(make_node, clock, net, monkeypatch):
    a, b = cluster(make_node, 2)
    sent = spy(net, monkeypatch)
    a.register(ADDRESS, "web")
    a.deregister(ADDRESS)
    tomb = a.store.get(ADDRESS, clock.now())
    assert tomb is not None and tomb.deleted
    sent.clear()
    older = Entry(ADDRESS, "web", 1, tomb.version - 1, "n2:5002", False, clock.now())
    assert a.handle(rumor_of(older, now=clock.now()))["applied"] == 0
    assert ADDRESS not in a.listing() and a.store.get(ADDRESS, clock.now()) == tomb

    a.register("10.9.0.2:80", "db")
    newer = a.store.get("10.9.0.2:80", clock.now())
    sent.clear()
    stale = dataclasses.replace(newer, app_name="stale", version=newer.version - 1)
    assert a.handle(rumor_of(stale, now=clock.now()))["applied"] == 0
    assert a.listing()["10.9.0.2:80"].app_name == "db"
    assert sent == []  # what changed nothing is not forwarded


def test_a_rumor_takes_the_new_peer_limit_and_the_screen_of_a_push(make_node, clock):
    node = make_node("n1:5001", max_new_peers=2)
    now = clock.now()
    peers = [Entry(f"n{i}:7000", NODE_APP, 0, 1, f"n{i}:7000", False, now) for i in range(10, 15)]
    bad = Entry("not an address", "web", 0, 1, "n2:5002", False, now)
    node.handle(rumor_of(*peers, bad, now=now))
    assert len([p for p in peers if node.store.get(p.address, now) is not None]) == 2
    assert node.stats.refused["new_peer_limit"] == 3 and node.stats.refused["address"] == 1


def test_an_unsigned_or_forged_rumor_is_refused_counted_and_not_merged(make_node, clock, net):
    node = make_node("n1:5001", gossip_keys=(KEY,))
    body = wire.dumps(rumor_of(Entry(ADDRESS, "web", 0, 1, "n2:5002", False, clock.now()), now=clock.now()))
    for keyring, reason in ((Keyring(()), "unsigned"), (Keyring(parse_keys((STRANGER,))), "bad_signature")):
        with pytest.raises(Forbidden):
            net.carry("forger:1", node.address, body, keyring.seal(body, REQUEST))
        assert node.stats.rejected[reason] == 1
    assert ADDRESS not in node.listing() and node.stats.merges_applied == 0


def test_keyed_nodes_spread_signed_rumors(make_node):
    nodes = cluster(make_node, 4, gossip_keys=(KEY,))
    nodes[1].register(ADDRESS, "web")
    assert all(ADDRESS in n.listing() for n in nodes)
    assert sum(n.stats.rejected["unsigned"] + n.stats.rejected["bad_signature"] for n in nodes) == 0


# -- bounds ------------------------------------------------------------------------------------------


def test_a_big_change_sends_one_datagram_and_leaves_the_rest_to_the_rounds(make_node, clock):
    a, b, c = cluster(make_node, 3)
    now = clock.now()
    news = [Entry(f"10.9.1.{i}:80", "web", 0, 1, "n9:5009", False, now) for i in range(40)]
    assert len(a.merge(news, "n9:5009")) == 40
    assert a.rumors.stats.left == 40 - rumor.MAX_ENTRIES
    assert metric(a, "sd_gossip_rumor_entries_left_total") == 40 - rumor.MAX_ENTRIES
    assert len([x for x in b.listing() if x.startswith("10.9.1.")]) == rumor.MAX_ENTRIES
    for _ in range(3):
        for node in (a, b, c):
            node.run_round()
    assert all(len([x for x in n.listing() if x.startswith("10.9.1.")]) == 40 for n in (a, b, c))


@pytest.mark.parametrize("app_name", ["web", "x" * 200])
def test_a_rumor_always_fits_one_signed_datagram(app_name):
    now = 1_700_000_000.0
    entries = [Entry(f"[2001:db8::{i:x}]:65535", app_name, 2**40, 2**40 + i, "[2001:db8::ffff]:65535", False,
                     now - 12345.678) for i in range(40)]
    keyring = Keyring(parse_keys((KEY,)), "c" * 64)
    carried = rumor.fit(entries, now, "[2001:db8::1]:65535", TEST.max_datagram - rumor.FRAME_ROOM)
    assert 1 <= len(carried) <= rumor.MAX_ENTRIES
    payload = udp.encode(wire.encode(wire.Rumor("[2001:db8::1]:65535", carried), now))
    datagram = udp.pack(udp.KIND_REQUEST, b"\0" * udp.ID_BYTES, keyring.seal(payload, REQUEST), payload)
    assert len(datagram) <= TEST.max_datagram


class Stalled:
    """A transport whose sends hang until released (a peer that never answers)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def send(self, peer, message, timeout):
        self.entered.release()
        self.release.wait(30)
        raise TransportError(f"{peer}: no answer")


def test_when_sends_back_up_further_rumors_are_dropped_and_counted_and_writes_go_on(tmp_path):
    peers = tuple(f"n{i}:5000" for i in range(2, 6))
    config = dataclasses.replace(TEST, port=5001, advertise="n1:5001", seeds=peers).validate()
    clock, transport = FakeClock(), Stalled()
    node = build_node(config, store=Store(lease_of(config)), transport=transport, clock=clock,
                      rng=random.Random(0), parallel=True)
    node.store.apply([Entry(p, NODE_APP, 0, 1, p, False, clock.now()) for p in peers], clock.now())
    try:
        writes = 30
        for i in range(writes):  # each returns at once although no rumor is ever answered
            node.register(f"10.9.2.{i}:80", "web")
        for _ in range(config.fanout):  # every sender is stuck in a send
            assert transport.entered.acquire(timeout=10)
        assert len([a for a in node.listing() if a.startswith("10.9.2.")]) == writes
        assert node.rumors.stats.dropped == writes * config.fanout - rumor.QUEUE_LIMIT
        assert metric(node, "sd_gossip_rumors_dropped_total") == writes * config.fanout - rumor.QUEUE_LIMIT
    finally:
        transport.release.set()
        node.stop()


# -- in the simulator --------------------------------------------------------------------------------


def test_simulated_rumors_are_messages_in_flight_and_a_cluster_at_rest_sends_none():
    sim = SimCluster(30, seed=4)
    sim.wait_converged(timeout=30)
    sim.step(10)
    sent = sum(sim.node(n).rumors.stats.sent for n in sim.nodes)
    sim.step(20)
    assert sum(sim.node(n).rumors.stats.sent for n in sim.nodes) == sent  # at rest: none
    sim.register("n5", ADDRESS, "web")
    assert sim.holders(ADDRESS) == ["n5"]  # nothing crossed the network within the call
    sim.step(1)
    assert len(sim.holders(ADDRESS)) == 30


def test_synchronous_simulation_is_pure_push_pull():
    sim = SimCluster(30, seed=4, synchronous=True)
    sim.wait_converged(timeout=30)
    sim.register("n5", ADDRESS, "web")
    sim.wait_converged(timeout=30, expect_present=[ADDRESS])
    assert sum(sim.node(n).rumors.stats.sent for n in sim.nodes) == 0
    sim.synchronous = False  # the experiment switches modes on one cluster
    sim.register("n6", "10.9.0.2:80", "web")
    sim.step(1)
    assert len(sim.holders("10.9.0.2:80")) == 30
