"""Members and candidates: whom a node gossips with, and how many new peers one message may add."""

from __future__ import annotations

import random

from harness.sim import SimCluster
from node import wire
from node.membership import Members, Pace, admit, select_targets
from node.protocol import NODE_APP, Entry, select_peers

REAL = ["10.0.0.2:80", "10.0.0.3:80"]
FAKE = sorted(f"10.9.{i // 250}.{i % 250}:80" for i in range(10_000))


def node_entry(address: str, deleted: bool = False, app: str = NODE_APP) -> Entry:
    return Entry(address, app, 0, 1, address, deleted, 0.0)


def test_a_round_takes_its_members_and_at_most_one_candidate_among_thousands():
    rng = random.Random(1)
    for _ in range(200):
        peers = select_targets(rng, REAL, FAKE, (), "10.0.0.1:80", 3)
        assert sorted(p for p in peers if p in REAL) == REAL and len(peers) == 3


def test_without_candidates_the_choice_is_the_uniform_one():
    live = sorted(f"10.0.0.{i}:80" for i in range(2, 50))
    a, b = random.Random(5), random.Random(5)
    for _ in range(50):
        assert select_targets(a, live, [], ["10.0.0.99:80"], "10.0.0.1:80", 3) == \
            select_peers(b, live, ["10.0.0.99:80"], "10.0.0.1:80", 3, presorted=True)


def test_a_node_without_members_draws_its_whole_fanout_among_candidates():
    peers = select_targets(random.Random(2), [], FAKE[:10], (), "10.0.0.1:80", 3)
    assert len(set(peers)) == 3 and set(peers) <= set(FAKE[:10])


def test_members_are_peers_seen_first_hand_or_seeds_and_are_forgotten_when_gone():
    members = Members(trusted=["10.0.0.9:80"])
    members.vouch("10.0.0.2:80")
    assert members.split(["10.0.0.2:80", "10.0.0.3:80", "10.0.0.9:80"]) == \
        (["10.0.0.2:80", "10.0.0.9:80"], ["10.0.0.3:80"])
    assert members.split(["10.0.0.3:80"]) == ([], ["10.0.0.3:80"])  # 2 and 9 marked down
    assert "10.0.0.2:80" not in members and "10.0.0.9:80" in members  # a seed stays trusted


def test_one_message_adds_at_most_the_limit_of_new_peers_and_everything_else_passes():
    held = {a: node_entry(a) for a in REAL}
    others = [node_entry(REAL[0]), node_entry("10.8.0.1:80", deleted=True), node_entry("10.8.0.2:80", app="web"),
              node_entry("10.0.0.1:80")]  # a known peer, a tombstone, a client, this node itself
    kept, refused = admit([node_entry(a) for a in FAKE] + others, held, "10.0.0.1:80", 128)
    assert refused == len(FAKE) - 128
    assert len(kept) == 128 + len(others) and kept[-len(others):] == others


def test_in_a_cluster_fed_fake_peers_news_still_spreads_and_a_newcomer_joins():
    c = SimCluster(5, seed=4)
    c.wait_converged(timeout=5)
    now = c.clock.now()
    fakes = [Entry(a, NODE_APP, 0, 5, "10.9.255.1:80", False, now) for a in FAKE]
    c.node("n1").handle(wire.encode(wire.Push("10.9.255.1:80", fakes, []), now))
    c.step(20)  # the fakes the bound let in reach every node (and are being marked down, a few a round)
    assert c.node("n1").stats.refused["new_peer_limit"] == len(FAKE) - 128
    assert all(len(c.node(n).peers()) > 20 for n in c.nodes)
    c.register("n1", "10.3.0.1:80", "web")
    assert c.run_until(lambda: len(c.holders("10.3.0.1:80")) == 5, max_rounds=15) is not None
    late = c.add_node("n2")
    c.register(late, "10.3.0.2:80", "web")
    assert c.run_until(lambda: len(c.holders("10.3.0.2:80")) == 6, max_rounds=15) is not None
    assert all(c.address(late) in c.node(n).peers() for n in c.nodes if n != late)
    assert c.address(late) in c.node("n2").member_peers()  # the seed it joined through has seen it


def test_pace_asks_the_full_fanout_while_the_store_changes_and_the_rest_fanout_once_it_is_still():
    pace = Pace(3, rest=1, settle=4)
    assert [pace.next(7) for _ in range(6)] == [3, 3, 3, 3, 1, 1]  # still for 4 rounds: rest
    assert [pace.next(8), pace.next(8)] == [3, 3]  # a write, merge or sweep: full again
    assert [pace.next(8) for _ in range(3)] == [3, 3, 1]


def test_pace_without_a_rest_fanout_always_asks_the_full_fanout():
    assert {Pace(3, rest=0, settle=1).next(1) for _ in range(20)} == {3}
    assert Pace(2, rest=5, settle=0).next(1) == 2  # never above the fanout
