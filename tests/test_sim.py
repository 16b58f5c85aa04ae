"""In-process clusters on the in-memory transport: dissemination, partitions, scenarios."""

from __future__ import annotations

import statistics

import pytest

from harness import scenarios
from harness.errors import ConvergenceTimeout
from harness.sim import SimCluster

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


def test_killed_node_expires_everywhere_then_returns_on_restart():
    c = SimCluster(4, seed=5)
    c.wait_converged(timeout=2)
    c.kill("n4")
    ttl = c.config.ttl
    c.step(int((ttl + 0.5) / c.config.interval))
    statuses = {c.views([n])[n]["n4:5000"]["status"] for n in ["n1", "n2", "n3"]}
    assert statuses == {"expired"}
    c.start("n4")  # it renews its own entry in its first round, and the renewal spreads
    healthy = lambda: all(v["n4:5000"]["status"] == "healthy" for v in c.views().values())  # noqa: E731
    assert c.run_until(healthy, max_rounds=10) is not None


@pytest.mark.parametrize("name", sorted(scenarios.SCENARIOS))
@pytest.mark.parametrize("synchronous", [False, True], ids=["async", "sync"])
def test_shared_scenarios_pass_in_simulation(name, synchronous):
    cluster = SimCluster(5, seed=11, synchronous=synchronous)
    scenarios.run(cluster, scenarios.SCENARIOS[name](within=5.0))
