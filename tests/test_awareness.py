"""Local health (Lifeguard's awareness): a node that finds itself slow holds back its verdicts."""

from __future__ import annotations

import pytest

from harness.sim import SimCluster
from node import wire
from node.app import create_app
from node.awareness import Awareness
from node.liveness import ALIVE, DENIED, NO_ANSWER, UNREACHED

A, B, C, D = "n1:5001", "n2:5002", "n3:5003", "n4:5004"


# -- the score ------------------------------------------------------------------------------------


def test_the_score_rises_on_late_rounds_and_falls_back_after_rounds_on_time():
    health = Awareness(top=8)
    assert health.round_ended(late=0.3, interval=0.2, ok=3, failed=0) == 1  # overran: late even if all went well
    assert health.round_ended(late=0.25, interval=0.2, ok=0, failed=3) == 2
    assert not health.healthy()
    assert health.round_ended(late=0.01, interval=0.2, ok=2, failed=1) == 2  # failures on time: the peers' fault?
    assert health.round_ended(late=0.01, interval=0.2, ok=0, failed=0) == 2  # no exchange: no evidence
    assert health.round_ended(late=0.01, interval=0.2, ok=3, failed=0) == 1
    assert health.round_ended(late=0.0, interval=0.2, ok=3, failed=0) == 0
    assert health.round_ended(late=0.0, interval=0.2, ok=3, failed=0) == 0 and health.healthy()


def test_the_score_is_bounded_and_so_are_the_timeouts_it_scales():
    health = Awareness(top=3)
    for _ in range(10):
        health.refuted()
    assert health.score == 3 and health.scale(0.5) == 2.0
    off = Awareness(top=0)
    off.refuted()
    off.wave_ended(3, [False, False, False, False])
    assert off.healthy() and off.scale(0.5) == 0.5


def test_a_wave_without_any_answer_counts_against_the_asker_only_when_helpers_were_asked():
    health = Awareness()
    assert health.wave_ended(helpers=0, answered=[False]) == 0  # a cluster of two: says nothing
    assert health.wave_ended(helpers=3, answered=[False, False, False, False]) == 1
    assert health.wave_ended(helpers=3, answered=[False, True]) == 0  # a helper answered ("alive" or not)


def test_a_node_scores_its_rounds_refutations_and_exports_the_score(make_node):
    a, b = make_node(A, seeds=(B,)), make_node(B)
    slow = a.config.interval  # a round that starts a whole interval late
    a.run_round(late=slow)
    a.run_round(late=slow)
    assert a.awareness.score == 2
    metrics = create_app(node=a).test_client().get("/metrics").get_data(as_text=True)
    assert "sd_gossip_local_health 2.0" in metrics
    a.run_round()
    a.run_round()
    assert a.awareness.score == 0
    b.store.write_local(A, b.clock.now(), 0, B, deleted=True)  # b marks a down...
    b.run_round([A])  # ...and pushes it to a, which refutes at once
    assert a.stats.refutations == 1 and a.awareness.score == 1


# -- the detector of a node that finds itself slow ------------------------------------------------


@pytest.fixture
def four(make_node):
    """Four nodes that all know each other and have met first-hand (members)."""
    nodes = [make_node(x, seeds=(A,)) for x in (A, B, C, D)]
    for _ in range(3):
        for n in nodes:
            n.run_round([x.address for x in nodes if x is not n])
    assert all(len(n.member_peers()) == 3 for n in nodes)
    return nodes


def test_a_node_whose_rounds_start_late_marks_no_one_down_and_does_once_on_time(four, net):
    a, b, _, _ = four
    net.set_down(D)  # killed
    for _ in range(2 * a.config.probe_waves):
        a.run_round([D], late=a.config.interval)
    assert a.stats.suspicions >= 2 and a.stats.down_marks == 0
    assert D in a.listing()
    for _ in range(b.config.probe_waves):  # a healthy node: as many waves (rounds) as ever
        assert b.stats.down_marks == 0
        b.run_round([D])
    assert b.stats.down_marks == 1 and D not in b.listing()
    net.set_down(B)  # keep b's tombstone away from a: a must decide by itself
    a.run_round([D])  # on time: its last late wave is still settled as unsettled...
    for _ in range(a.config.probe_waves):  # ...then a fresh suspicion runs to its verdict
        a.run_round([D])
    assert a.awareness.healthy() and a.stats.down_marks == 1 and D not in a.listing()


def test_a_slow_node_waits_longer_for_a_slow_peer(four, net):
    a = four[0]
    net.set_delay(D, 1.5 * a.config.timeout)  # answers, but later than a's timeout
    assert a.detector.ping(D) == UNREACHED
    a.awareness.apply(1)  # a found itself slow: twice the timeout
    assert a.detector.ping(D) == ALIVE


def test_an_unhealthy_helper_does_not_deny_and_the_asker_counts_it_silent(four, net):
    a, b, c, _ = four
    client = create_app(node=b).test_client()

    def probe(target):
        return client.post("/gossip", json=wire.encode(wire.Probe(A, target), 0.0))

    net.set_down(D)
    assert wire.decode_alive(probe(D).get_json()) == wire.Alive(False)  # healthy: a confirmation
    assert a.detector._probe(B, D) == DENIED
    b.awareness.apply(1)
    resp = probe(D)
    assert resp.status_code == 400 and "slow itself" in resp.get_json()["message"]
    assert a.detector._probe(B, D) == NO_ANSWER
    assert wire.decode_alive(probe(C).get_json()) == wire.Alive(True)  # what it can reach, it still vouches for
    c.awareness.apply(1)
    for _ in range(2 * a.config.probe_waves):  # both helpers unhealthy: nothing confirms, nothing marked
        a.run_round([D])
    assert a.stats.down_marks == 0 and D in a.listing()
    assert not a.awareness.healthy()  # its waves went unanswered: evidence against itself


# -- a whole simulated cluster ---------------------------------------------------------------------


def test_a_healthy_cluster_stays_healthy_and_still_finds_a_killed_node():
    c = SimCluster(40, seed=3)
    c.wait_converged(timeout=5)
    c.loss(10)
    c.step(200)
    c.kill("n40")
    assert c.run_until(lambda: c.holders("n40:5000") == [], 100) is not None
    c.loss(0)
    c.step(20)
    survivors = c.live_nodes()
    assert all(c.holders(f"{x}:5000") == survivors for x in survivors)
    assert max(c.node(x).awareness.score for x in survivors) <= 1
