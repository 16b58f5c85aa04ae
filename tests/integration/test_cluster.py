"""Five-node Docker clusters under faults; the shared scenarios run here as in simulation."""

from __future__ import annotations

import math

import pytest
import requests

from harness import Cluster, scenarios, wait_until

from .params import FANOUT, INTERVAL

pytestmark = pytest.mark.integration

# Seconds allowed for a step to converge under faults (generous: containers share 2 cores).
WITHIN = 30.0


def dissemination_bound(n: int, interval: float = INTERVAL, fanout: int = FANOUT) -> float:
    """Seconds within which a registration must reach all n nodes.

    Push-pull needs ~log_(fanout+1) n rounds (p99 of REFERENCE.md: 2 rounds at n=5, f=3);
    allow twice that plus 4 rounds of slack, plus 1 s for HTTP polling and scheduling.
    """
    rounds = 2 * math.ceil(math.log(n) / math.log(fanout + 1)) + 4
    return rounds * interval + 1.0


@pytest.mark.parametrize("origin", ["n1", "n3", "n5"])
def test_registration_at_any_node_reaches_all_within_bound(healthy5, origin):
    c = healthy5
    address = f"10.7.0.{origin[1:]}:80"
    c.register(origin, address, "everywhere")
    bound = dissemination_bound(len(c.nodes))
    c.wait_converged(timeout=bound, expect_present=[address], interval=0.05)
    assert {v[address]["app_name"] for v in c.views().values()} == {"everywhere"}


def test_partition_sides_converge_alone_then_all_after_heal(healthy5):
    scenarios.run(healthy5, scenarios.partition_heal(WITHIN))


def test_deregistration_during_partition_stays_deleted(healthy5):
    scenarios.run(healthy5, scenarios.deregister_in_partition(WITHIN))


def test_killed_node_keeps_data_and_catches_up(healthy5):
    scenarios.run(healthy5, scenarios.kill_restart(WITHIN))


def test_skewed_clock_cannot_overwrite_newer_data(healthy5):
    scenarios.run(healthy5, scenarios.skewed_clock(WITHIN, seconds=600))
    wall = requests.get(healthy5.url("n2") + "/admin/clock", timeout=2).json()
    assert wall["offset"] == 600


def test_paused_node_catches_up_after_unpause(healthy5):
    c = healthy5
    c.pause("n3")
    c.register("n1", "10.7.1.1:80", "while-paused")
    others = ["n1", "n2", "n4", "n5"]
    c.wait_converged(timeout=WITHIN, nodes=others, expect_present=["10.7.1.1:80"])
    c.unpause("n3")
    c.wait_converged(timeout=WITHIN, expect_present=["10.7.1.1:80"])


def test_cluster_converges_under_30_percent_packet_loss(healthy5):
    c = healthy5
    for n in c.nodes:
        c.loss(n, 30)
    c.register("n2", "10.7.2.1:80", "lossy")
    c.register("n4", "10.7.2.2:80", "lossy")
    c.wait_converged(timeout=WITHIN * 2, expect_present=["10.7.2.1:80", "10.7.2.2:80"])


def test_late_joiner_knowing_one_seed_catches_up(healthy5):
    c = healthy5
    c.register("n4", "10.7.3.1:80", "old-news")
    c.wait_converged(timeout=WITHIN, expect_present=["10.7.3.1:80"])
    joiner = c.add_node()
    c.wait_converged(timeout=WITHIN, expect_present=["10.7.3.1:80", f"{joiner}:5000"])


def test_one_way_partition_carries_state_in_the_open_direction(docker_client, node_image, run_tag):
    with Cluster(nodes=2, name=f"it2-{run_tag}", image=node_image, client=docker_client,
                 interval=INTERVAL, fanout=FANOUT, timeline=False) as c:
        c.wait_converged(timeout=WITHIN)
        c.partition_one_way("n1", "n2")  # n1 cannot open connections to n2; n2 can to n1
        before = _failed_exchanges(c, "n1")
        c.register("n1", "10.7.4.1:80", "from-n1")
        c.register("n2", "10.7.4.2:80", "from-n2")
        # Only n2's exchanges work, and push-pull carries state both ways over them.
        c.wait_converged(timeout=WITHIN, expect_present=["10.7.4.1:80", "10.7.4.2:80"])
        # n1's own attempts time out (after the node's 0.5 s gossip timeout) and are counted.
        grew = wait_until(lambda: _failed_exchanges(c, "n1") > before, timeout=10, interval=0.2)
        assert grew.ok, "n1's exchanges towards n2 should fail while cut"
        c.heal()
        c.register("n1", "10.7.4.3:80", "after-heal")
        c.wait_converged(timeout=WITHIN, expect_present=["10.7.4.3:80"])


def _failed_exchanges(c: Cluster, node: str) -> float:
    return c.metrics([node])[node]["sd_gossip_exchanges_failed_total"]
