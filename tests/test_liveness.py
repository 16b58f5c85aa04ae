"""Failure detection from the exchanges: suspicion, indirect probes, marking down, refutation."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest

from harness.sim import SIM, SimCluster
from node import wire
from node.app import build_node, create_app
from node.config import TEST
from node.gossip import lease_of
from node.membership import SETTLE_ROUNDS
from node.protocol import NODE_APP
from node.store import Store

ROUND = SIM.interval
BOUND = 3.0  # seconds: the target for every live node to report a killed one


def addr(name: str) -> str:
    return f"{name}:5000"


def listed_by(c: SimCluster, name: str) -> list[str]:
    """The live nodes that list node ``name`` (healthy: node entries are not leased)."""
    return c.holders(addr(name))


def down_marks(c: SimCluster) -> int:
    return sum(c.node(x).stats.down_marks for x in c.nodes)


def converged(n: int, seed: int = 1, **config) -> SimCluster:
    c = SimCluster(n, seed=seed, config=dataclasses.replace(SIM, **config))
    c.wait_converged(timeout=5)
    assert all(len(c.node(x).peers()) == n - 1 for x in c.nodes)
    return c


# -- the wire steps, through a node's endpoint ----------------------------------------------------


def test_a_node_answers_ping_at_once_and_probe_after_pinging_the_target(make_node, net):
    a, b, c = make_node("n1:5001"), make_node("n2:5002", seeds=("n3:5003",)), make_node("n3:5003")
    c.renew_self()
    b.run_round()  # b holds n3's entry: a node pings only targets it knows
    client = create_app(node=b).test_client()

    def post(message):
        resp = client.post("/gossip", json=wire.encode(message, 0.0))
        assert resp.status_code == 200, resp.data
        return wire.decode_alive(resp.get_json())

    assert post(wire.Ping("n1:5001")) == wire.Alive(True)
    assert post(wire.Probe("n1:5001", "n3:5003")) == wire.Alive(True)
    assert post(wire.Probe("n1:5001", "n2:5002")) == wire.Alive(True)  # the helper is the target
    net.set_down("n3:5003")
    assert post(wire.Probe("n1:5001", "n3:5003")) == wire.Alive(False)
    net.set_down("n3:5003", False)
    net.cut("n2:5002", "n3:5003")
    assert post(wire.Probe("n1:5001", "n3:5003")) == wire.Alive(False)
    assert c.stats.bytes_received > 0 and a.stats.rounds == 0  # the pings reached n3, n1 did nothing
    resp = client.post("/gossip", json={"v": 1, "type": "probe", "from": "n1:5001", "target": "nope"})
    assert resp.status_code == 400 and resp.get_json()["error"] == "bad_request"


def test_a_probe_cannot_make_a_node_contact_an_address_it_does_not_know(make_node, net):
    b = make_node("n2:5002")
    b.register("10.7.0.9:80", "web")  # an instance, not a node: no target either
    sent: list[str] = []
    send = b.transport.send
    b.transport.send = lambda peer, message, timeout: sent.append(peer) or send(peer, message, timeout)
    client = create_app(node=b).test_client()
    for target in ("10.9.9.9:22", "10.7.0.9:80"):
        resp = client.post("/gossip", json=wire.encode(wire.Probe("n1:5001", target), 0.0))
        assert resp.status_code == 400 and "no node known here" in resp.get_json()["message"]
    assert sent == []


# -- a killed node ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, seed", [(10, 1), (10, 2), (40, 3)])
def test_a_killed_node_is_marked_down_and_listed_nowhere_within_the_bound(n, seed):
    c = converged(n, seed)
    victim = f"n{n}"
    c.kill(victim)
    rounds = c.run_until(lambda: listed_by(c, victim) == [], max_rounds=int(BOUND / ROUND))
    assert rounds is not None, f"still listed by {listed_by(c, victim)} after {BOUND} s"
    assert down_marks(c) >= 1
    # Nobody else was marked down, and every survivor still lists every other survivor.
    c.step(20)
    survivors = c.live_nodes()
    assert all(listed_by(c, x) == survivors for x in survivors)
    assert sum(c.node(x).stats.refutations for x in survivors) == 0


def test_a_killed_node_that_restarts_refutes_and_is_listed_again():
    c = converged(6)
    c.kill("n6")
    assert c.run_until(lambda: listed_by(c, "n6") == [], 20) is not None
    c.start("n6")
    assert c.run_until(lambda: len(listed_by(c, "n6")) == 6, 20) is not None
    assert c.node("n6").stats.refutations == 1


# -- false suspicions -----------------------------------------------------------------------------


def test_a_node_falsely_marked_down_refutes_and_is_listed_again():
    c = converged(8)
    victim = c.node("n5")
    c.node("n1").store.write_local(addr("n5"), c.clock.now(), 0, addr("n1"), deleted=True)  # a false mark
    tomb = c.node("n1").store.get(addr("n5"), c.clock.now())
    c.step(1)  # the tombstone spreads, n5 pulls it or is pushed it...
    rounds = c.run_until(lambda: len(listed_by(c, "n5")) == 8, 20)
    assert rounds is not None and victim.stats.refutations >= 1
    mine = victim.store.get(addr("n5"), c.clock.now())
    assert mine.version > tomb.version and not mine.deleted and mine.app_name == NODE_APP


def test_a_peer_unreachable_from_one_node_only_is_not_marked_down():
    c = converged(6)
    c.partition_one_way("n1", "n6")  # n1 cannot reach n6; everyone else can
    c.step(100)
    assert c.node("n1").stats.suspicions > 0  # n1's exchanges with n6 failed and it asked around
    assert down_marks(c) == 0
    assert listed_by(c, "n6") == c.nodes


def test_a_node_cut_off_from_everyone_marks_no_one_down():
    """Its helpers do not answer either: no confirmation, so no verdict (it may be the one cut off)."""
    c = converged(6)
    c.isolate("n1")
    c.step(30)
    assert c.node("n1").stats.suspicions > 0 and c.node("n1").stats.down_marks == 0
    assert sorted(c.node("n1").listing()) == [addr(x) for x in c.nodes]


def test_a_partition_marks_the_other_side_down_and_heal_restores_everyone():
    c = converged(8)
    left, right = ["n1", "n2", "n3", "n4"], ["n5", "n6", "n7", "n8"]
    c.partition([left, right])
    c.step(30)
    for side, other in ((left, right), (right, left)):
        views = c.views(side)
        assert all(addr(x) not in views[y] for x in other for y in side), "other side still listed"
        assert all(addr(x) in views[y] for x in side for y in side), "own side marked down"
    c.heal()
    assert c.run_until(lambda: all(len(listed_by(c, x)) == 8 for x in c.nodes), 40) is not None
    assert sum(c.node(x).stats.refutations for x in c.nodes) >= 8  # everyone was marked down once
    c.wait_converged(timeout=5)


def test_packet_loss_on_every_link_marks_no_live_node_down():
    c = converged(10, seed=4)
    c.loss(10)
    c.step(1000)  # 200 virtual seconds
    assert sum(c.node(x).stats.suspicions for x in c.nodes) > 100  # exchanges did fail
    assert down_marks(c) == 0


def test_suspicions_are_bounded_per_peer_and_in_number():
    c = converged(10, max_suspects=2)
    n1 = c.node("n1")
    for x in ["n8", "n9", "n10"]:
        c.kill(x)
    n1.run_round(peers=[addr("n8"), addr("n8"), addr("n9"), addr("n10")])
    assert n1.stats.suspicions == 2 and n1.detector.suspects() == [addr("n8"), addr("n9")]
    n1.run_round(peers=[])  # the second wave: both marked down, room for more
    assert n1.stats.down_marks == 2 and n1.detector.suspects() == []


# -- at rest --------------------------------------------------------------------------------------


def test_a_converged_cluster_at_rest_writes_nothing_and_exchanges_one_summary(monkeypatch):
    c = converged(20)
    c.step(5 + SETTLE_ROUNDS)  # every store still for SETTLE_ROUNDS rounds: rounds at the rest fanout
    before = {x: (c.node(x).store.snapshot().clock, c.node(x).store.snapshot().generation) for x in c.nodes}
    kinds: list[object] = []
    deliver = c.network.deliver

    def counting(src, dst, message, *more):
        kinds.append(message.get("type"))
        return deliver(src, dst, message, *more)

    monkeypatch.setattr(c.network, "deliver", counting)
    c.step(100)  # 20 virtual seconds: three times the client lease
    after = {x: (c.node(x).store.snapshot().clock, c.node(x).store.snapshot().generation) for x in c.nodes}
    assert after == before
    assert len(kinds) == 100 * 20 * SIM.rest_fanout and set(kinds) == {wire.SUMMARY}


def test_a_write_at_rest_brings_the_fanout_back_and_a_write_whose_pushes_are_lost_still_spreads(monkeypatch):
    c = converged(20)
    c.step(5 + SETTLE_ROUNDS)
    writer = c.node("n7")
    monkeypatch.setattr(writer.rumors, "enabled", False)  # its pushes are lost: the rounds must carry it
    c.register("n7", "10.3.0.7:80", "web")
    done = writer.run_round()
    assert len(done) == SIM.fanout  # the store just changed: full fanout
    assert c.run_until(lambda: len(c.holders("10.3.0.7:80")) == 20, max_rounds=12) is not None
    c.step(SETTLE_ROUNDS + 1)
    assert len(writer.run_round()) == SIM.rest_fanout  # still again


@pytest.mark.parametrize("config", [{"eager_push": False}, {"rest_fanout": 0}])
def test_without_eager_push_or_a_rest_fanout_rounds_at_rest_keep_the_full_fanout(config):
    c = converged(10, **config)
    c.step(5 + SETTLE_ROUNDS)
    assert [len(c.node(x).run_round()) for x in ("n2", "n5")] == [SIM.fanout] * 2


# -- real nodes' threads: waves on the probe pool -------------------------------------------------


def test_nodes_probing_on_their_pools_mark_a_killed_node_down(clock, net):
    names = [f"n{i}:500{i}" for i in range(1, 6)]
    nodes = []
    for i, a in enumerate(names):
        cfg = dataclasses.replace(TEST, port=5000 + i, advertise=a, seeds=tuple(names[:1]))
        node = build_node(cfg, store=Store(lease_of(cfg)), clock=clock, rng=random.Random(i), parallel=True)
        node.transport = net.attach(a, node)
        nodes.append(node)
    try:
        for _ in range(10):
            for node in nodes:
                node.run_round()
        assert all(len(node.peers()) == 4 for node in nodes)
        net.set_down(names[4])
        deadline = time.monotonic() + 10
        while any(names[4] in node.listing() for node in nodes[:4]) and time.monotonic() < deadline:
            for node in nodes[:4]:
                node.run_round()
            time.sleep(0.01)
        assert not any(names[4] in node.listing() for node in nodes[:4])
        assert sum(node.stats.down_marks for node in nodes) >= 1
        for _ in range(100):  # suspicions still in flight end without a second tombstone
            if not any(node.detector.suspects() for node in nodes[:4]):
                break
            for node in nodes[:4]:
                node.run_round()
            time.sleep(0.01)
        assert not any(node.detector.suspects() for node in nodes[:4])
        assert all(names[i] in node.listing() for node in nodes[:4] for i in range(4))
    finally:
        for node in nodes:
            node.stop()
