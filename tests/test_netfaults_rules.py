"""iptables rules and scripts for network faults, without Docker."""

import pytest

from harness import topology
from harness.netfaults import rules

NODES = ["n1", "n2", "n3", "n4", "n5"]
IPS = {n: f"10.213.0.{10 + topology.node_index(n)}" for n in NODES}


def test_partition_rules_drop_both_directions_on_each_side():
    isolated = rules.partition_rules("n3", [["n1", "n2"], ["n3"]], IPS)
    assert ["-A", "SD-FAULTS-OUT", "-d", IPS["n1"], "-j", "DROP"] in isolated
    assert ["-A", "SD-FAULTS-IN", "-s", IPS["n1"], "-j", "DROP"] in isolated
    assert len(isolated) == 4
    assert rules.partition_rules("n1", [["n1", "n2"], ["n3"]], IPS) == [
        ["-A", "SD-FAULTS-OUT", "-d", IPS["n3"], "-j", "DROP"],
        ["-A", "SD-FAULTS-IN", "-s", IPS["n3"], "-j", "DROP"],
    ]


def test_one_way_rules_only_match_connections_src_opened():
    src_rules = rules.one_way_rules("n1", "n1", "n2", IPS)
    dst_rules = rules.one_way_rules("n2", "n1", "n2", IPS)
    original = ["-m", "conntrack", "--ctdir", "ORIGINAL", "-j", "DROP"]
    assert src_rules == [["-A", "SD-FAULTS-OUT", "-d", IPS["n2"], *original]]
    assert dst_rules == [["-A", "SD-FAULTS-IN", "-s", IPS["n1"], *original]]
    assert rules.one_way_rules("n3", "n1", "n2", IPS) == []


def test_loss_rules_use_probability_and_spare_loopback_and_the_harness():
    spare, rule = rules.loss_rules(25, spare=["10.213.0.1"])
    assert spare == ["-A", "SD-LOSS", "-s", "10.213.0.1", "-j", "RETURN"]
    assert rule[rule.index("--probability") + 1] == "0.2500"
    assert rule[:5] == ["-A", "SD-LOSS", "!", "-i", "lo"]
    with pytest.raises(ValueError):
        rules.loss_rules(0)


@pytest.mark.parametrize("percent,expected", [(100, 1), (50, 10), (30, 20), (1, None)])
def test_loss_probe_attempts(percent, expected):
    assert rules.loss_probe_attempts(percent) == expected


def test_setup_script_is_idempotent_per_chain():
    script = rules.setup_script("iptables")
    for chain, parent in rules.CHAINS.items():
        assert f"iptables -w -N {chain} 2>/dev/null || true" in script
        assert f"iptables -w -C {parent} -j {chain}" in script


def test_rules_script_stops_at_first_failure():
    script = rules.rules_script("iptables", [["-A", "X", "-j", "DROP"]])
    assert script.splitlines() == ["set -e", "iptables -w -A X -j DROP"]


def test_reachability_mismatches_names_each_wrong_link():
    expected = {("n1", "n2"): False, ("n2", "n1"): True, ("n1", "n3"): True}
    observed = {("n1", "n2"): True, ("n2", "n1"): True}
    assert rules.reachability_mismatches(expected, observed) == [
        "n1 -> n2: expected cut, probe found it open",
        "n1 -> n3: not probed",
    ]
