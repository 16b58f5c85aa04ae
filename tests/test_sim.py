"""In-process clusters on the in-memory transport: dissemination, partitions, scenarios."""

from __future__ import annotations

import gc
import statistics

import pytest

from harness import scenarios, sim
from harness.errors import ConvergenceTimeout
from harness.experiment import SimBackend, Sweep
from harness.sim import SimCluster
from node.transport import InMemoryNetwork

# Push-pull, fanout 3, N = 100: mean rounds to full dissemination (../shared/REFERENCE.md).
THEORY_PUSH_PULL_F3_N100 = 3.9


def rounds_to_all(cluster: SimCluster, trials: int) -> list[int]:
    """Register a new address at a random node per trial; count rounds until all list it."""
    out = []
    for i in range(trials):
        address = f"10.1.{i // 250}.{i % 250 + 1}:80"
        cluster.register(cluster.rng.choice(cluster.nodes), address, "probe")
        rounds = cluster.run_until(lambda a=address: len(cluster.holders(a)) == len(cluster.nodes), 60)
        assert rounds is not None, f"{address} did not reach every node in 60 rounds"
        out.append(rounds)
    return out


def test_hundred_nodes_disseminate_like_push_pull_theory():
    cluster = SimCluster(100, seed=7, synchronous=True)
    cluster.wait_converged(timeout=10)
    assert all(len(cluster.node(n).listing()) == 100 for n in cluster.nodes)
    mean = statistics.mean(rounds_to_all(cluster, trials=8))
    assert THEORY_PUSH_PULL_F3_N100 / 1.5 <= mean <= THEORY_PUSH_PULL_F3_N100 * 1.5, mean


def test_out_of_phase_rounds_spread_faster_than_synchronous_ones():
    sync = SimCluster(50, seed=3, synchronous=True)
    async_ = SimCluster(50, seed=3, synchronous=False)
    for c in (sync, async_):
        c.wait_converged(timeout=10)
    assert statistics.mean(rounds_to_all(async_, 6)) < statistics.mean(rounds_to_all(sync, 6))


def test_partition_sides_converge_alone_and_merge_after_heal():
    c = SimCluster(6, seed=1)
    c.wait_converged(timeout=5)
    left, right = ["n1", "n2", "n3"], ["n4", "n5", "n6"]
    c.partition([left, right])
    c.register("n1", "10.0.0.1:80", "a")
    c.register("n5", "10.0.0.2:80", "b")
    c.wait_converged(timeout=5, nodes=left, expect_present=["10.0.0.1:80"], expect_absent=["10.0.0.2:80"])
    c.wait_converged(timeout=5, nodes=right, expect_present=["10.0.0.2:80"], expect_absent=["10.0.0.1:80"])
    c.step(20)
    assert not any("10.0.0.1:80" in c.node(n).listing() for n in right)
    c.heal()
    c.wait_converged(timeout=5, expect_present=["10.0.0.1:80", "10.0.0.2:80"])
    # A deregistration made during a partition stays deleted after heal.
    c.register("n1", "10.0.0.3:80", "c")
    c.wait_converged(timeout=5, expect_present=["10.0.0.3:80"])
    c.partition([left, right])
    c.deregister("n1", "10.0.0.3:80")
    c.wait_converged(timeout=5, nodes=left, expect_absent=["10.0.0.3:80"])
    c.heal()
    c.wait_converged(timeout=5, expect_absent=["10.0.0.3:80"])
    c.step(50)
    assert c.holders("10.0.0.3:80") == []


def test_one_way_partition_still_carries_state_both_ways():
    c = SimCluster(2, seed=2, seeds=1)
    c.wait_converged(timeout=2)
    c.partition_one_way("n1", "n2")
    c.register("n1", "10.0.0.9:80", "x")
    c.wait_converged(timeout=2, expect_present=["10.0.0.9:80"])  # pulled by n2's exchanges
    assert c.node("n1").stats.exchanges_failed > 0


def test_convergence_timeout_says_which_node_lacks_what():
    c = SimCluster(3, seed=4)
    c.wait_converged(timeout=2)
    c.isolate("n3")
    c.register("n1", "10.0.0.7:80", "x")
    with pytest.raises(ConvergenceTimeout) as info:
        c.wait_converged(timeout=1, expect_present=["10.0.0.7:80"])
    assert "n3 lacks expected 10.0.0.7:80" in str(info.value)


def test_killed_node_is_marked_down_everywhere_then_returns_on_restart():
    c = SimCluster(4, seed=5)
    c.wait_converged(timeout=2)
    c.kill("n4")
    # Node entries are not leased: a killed node is not "expired" but marked down (absent).
    c.step(int(3.0 / c.config.interval))
    assert c.holders("n4:5000") == []
    assert all(c.node(n).store.get("n4:5000", c.clock.now()).deleted for n in ["n1", "n2", "n3"])
    c.start("n4")  # it finds its entry deleted, re-registers above the tombstone, and that spreads
    healthy = lambda: all(v.get("n4:5000", {}).get("status") == "healthy" for v in c.views().values())  # noqa: E731
    assert c.run_until(healthy, max_rounds=10) is not None


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
@pytest.mark.parametrize("synchronous", [False, True], ids=["async", "sync"])
def test_shared_scenarios_pass_in_simulation(name, synchronous):
    cluster = SimCluster(5, seed=11, synchronous=synchronous)
    scenarios.run(cluster, scenarios.SCENARIOS[name](within=5.0))


# -- warm start and the shortcuts that keep the simulation fast ---------------------------------


def full_membership(c: SimCluster) -> bool:
    return all(len(c.node(x).peers()) == len(c.nodes) - 1 for x in c.nodes)


def test_warm_start_is_the_state_a_gossip_bootstrap_reaches():
    gossiped, warm = SimCluster(12, seed=3), SimCluster(12, seed=3)
    rounds = gossiped.run_until(lambda: full_membership(gossiped), 20)
    assert rounds is not None and rounds > 0
    warm.warm()
    assert full_membership(warm)
    warm.step(rounds)  # the same virtual time, now with nothing left to gossip
    assert warm.clock.now() == gossiped.clock.now()
    for x in gossiped.nodes:
        a, b = gossiped.node(x).store.snapshot(), warm.node(x).store.snapshot()
        assert set(a.entries) == set(b.entries) and len(a.entries) == 12
        assert a.clock == b.clock == 1  # no renewal yet: every entry is its origin's first write
        for address, e in a.entries.items():
            f = b.entries[address]
            assert (e.app_name, e.last_update, e.version, e.origin, e.deleted) == (
                f.app_name, f.last_update, f.version, f.origin, f.deleted)
            # Gossip carries ages rounded to the millisecond (up to 0.5 ms off per hop, a
            # few hops here); the warm copy keeps the origin's instant exactly.
            assert abs(e.renewed_at - f.renewed_at) <= 5 * 0.0005
        assert gossiped.node(x).peers() == warm.node(x).peers()
    assert gossiped.digests() == warm.digests()


def test_warm_cluster_gossips_like_any_other():
    c = SimCluster(30, seed=8)
    c.warm()
    c.register("n7", "10.9.0.1:80", "probe")
    assert c.run_until(lambda: len(c.holders("10.9.0.1:80")) == 30, 20) is not None
    c.wait_converged(timeout=5, expect_present=["10.9.0.1:80"])


def test_sim_network_without_copies_counts_and_behaves_as_the_copying_one(monkeypatch):
    shared = SimCluster(8, seed=6)
    monkeypatch.setattr(sim, "InMemoryNetwork", lambda rng, copy: InMemoryNetwork(rng, copy=True))
    copying = SimCluster(8, seed=6)
    assert not shared.network.copy and copying.network.copy
    for c in (shared, copying):
        c.step(3)
        c.register("n2", "10.0.0.5:80", "a")
        c.loss(20)
        c.step(4)
        c.heal()
        c.deregister("n2", "10.0.0.5:80")
        c.step(12)  # past the first renewals
    assert shared.views() == copying.views()
    for x in shared.nodes:
        s, t = shared.node(x).stats, copying.node(x).stats
        assert (s.bytes_sent, s.bytes_received, s.exchanges_ok, s.exchanges_failed, s.merges_applied) == (
            t.bytes_sent, t.bytes_received, t.exchanges_ok, t.exchanges_failed, t.merges_applied)


def test_bytes_are_counted_once_on_each_side_of_every_message():
    c = SimCluster(6, seed=9)
    c.step(5)
    c.register("n3", "10.0.0.8:80", "a")
    c.step(3)
    stats = [c.node(x).stats for x in c.nodes]
    sent, received = sum(s.bytes_sent for s in stats), sum(s.bytes_received for s in stats)
    assert sent == received > 0  # every byte one node sent, another received
    # The initiators' own view of their exchanges is half of it: requests out, replies in.
    exchanged = sum(x.bytes_sent + x.bytes_received for x in c.node("n1").run_round())
    assert exchanged > 0
    assert sum(s.bytes_sent for s in stats) == sent + exchanged


def test_a_paused_node_neither_gossips_nor_answers_and_resumes_where_it_was():
    c = SimCluster(4, seed=10)
    c.wait_converged(timeout=2)
    c.pause("n4")
    frozen = c.node("n4").store.snapshot()
    rounds = c.node("n4").stats.rounds
    c.register("n1", "10.0.0.6:80", "while-paused")
    c.step(5)

    assert c.node("n4").store.snapshot() is frozen and c.node("n4").stats.rounds == rounds
    assert "10.0.0.6:80" not in c.node("n4").listing()
    assert sum(c.node(x).stats.exchanges_failed for x in ["n1", "n2", "n3"]) > 0  # it did not answer
    assert c.holders("10.0.0.6:80") == ["n1", "n2", "n3"]

    c.unpause("n4")
    c.wait_converged(timeout=2, expect_present=["10.0.0.6:80"])
    assert c.node("n4").stats.rounds > rounds


def test_the_simulator_offers_every_operation_of_the_cluster_contract():
    from harness.contract import ClusterLike

    assert isinstance(SimCluster(2), ClusterLike)


@pytest.mark.parametrize("enabled", [True, False])
def test_rounds_leave_the_garbage_collector_as_they_found_it(enabled):
    c = SimCluster(3, seed=1)
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        c.step(2)
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_experiment_starts_large_clusters_warm(monkeypatch):
    monkeypatch.setattr(SimBackend, "GOSSIP_BOOTSTRAP_MAX", 10)
    big, small = (SimBackend(n, 3, 0.2, 0.0, 1, Sweep(nodes=(n,))) for n in (20, 10))
    big.prepare()
    small.prepare()
    assert big.cluster.rounds == SimBackend.BOOTSTRAP_ROUNDS  # warm, then that many real rounds
    assert full_membership(big.cluster) and full_membership(small.cluster)
    assert big.cluster.node("n20").stats.rounds == SimBackend.BOOTSTRAP_ROUNDS
    assert small.cluster.node("n1").stats.exchanges_ok > 0
