"""Node names, partition planning and iptables rules, without Docker."""


import pytest

from harness import topology
from harness.errors import InvalidPartition, NodeNotFound

NODES = ["n1", "n2", "n3", "n4", "n5"]
IPS = {n: f"10.213.0.{10 + topology.node_index(n)}" for n in NODES}


def test_sort_nodes_numerically():
    assert topology.sort_nodes(["n10", "n2", "n1"]) == ["n1", "n2", "n10"]


@pytest.mark.parametrize("bad", ["x1", "n0", "n", "N1", "n01", None, 3])
def test_node_index_rejects_non_node_names(bad):
    with pytest.raises(NodeNotFound):
        topology.node_index(bad)


def test_validate_groups_adds_unlisted_nodes_as_one_group():
    assert topology.validate_groups([["n2", "n1"], ["n3"]], NODES) == [["n1", "n2"], ["n3"], ["n4", "n5"]]


def test_validate_groups_isolating_one_node():
    assert topology.validate_groups([["n3"]], NODES) == [["n3"], ["n1", "n2", "n4", "n5"]]


def test_validate_groups_unknown_node():
    with pytest.raises(NodeNotFound, match="n9"):
        topology.validate_groups([["n1"], ["n9"]], NODES)


def test_validate_groups_overlap_names_both_groups():
    with pytest.raises(InvalidPartition, match="n2 is in group 1 and group 2"):
        topology.validate_groups([["n1", "n2"], ["n2", "n3"]], NODES)


def test_validate_groups_duplicate_within_group():
    with pytest.raises(InvalidPartition, match="twice"):
        topology.validate_groups([["n1", "n1"], ["n2"]], NODES)


@pytest.mark.parametrize("groups", [[[], ["n1"]], [NODES], "n1,n2", ["n1", "n2"]])
def test_validate_groups_rejects_malformed(groups):
    with pytest.raises(InvalidPartition):
        topology.validate_groups(groups, NODES)


def test_partition_cuts_are_symmetric_and_cross_groups_only():
    cuts = topology.partition_cuts([["n1", "n2"], ["n3"]])
    assert cuts == {("n1", "n3"), ("n3", "n1"), ("n2", "n3"), ("n3", "n2")}


def test_partition_rules_drop_both_directions_on_each_side():
    rules = topology.partition_rules("n3", [["n1", "n2"], ["n3"]], IPS)
    assert ["-A", "SD-FAULTS-OUT", "-d", IPS["n1"], "-j", "DROP"] in rules
    assert ["-A", "SD-FAULTS-IN", "-s", IPS["n1"], "-j", "DROP"] in rules
    assert len(rules) == 4
    assert topology.partition_rules("n1", [["n1", "n2"], ["n3"]], IPS) == [
        ["-A", "SD-FAULTS-OUT", "-d", IPS["n3"], "-j", "DROP"],
        ["-A", "SD-FAULTS-IN", "-s", IPS["n3"], "-j", "DROP"],
    ]


def test_one_way_rules_only_match_connections_src_opened():
    src_rules = topology.one_way_rules("n1", "n1", "n2", IPS)
    dst_rules = topology.one_way_rules("n2", "n1", "n2", IPS)
    original = ["-m", "conntrack", "--ctdir", "ORIGINAL", "-j", "DROP"]
    assert src_rules == [["-A", "SD-FAULTS-OUT", "-d", IPS["n2"], *original]]
    assert dst_rules == [["-A", "SD-FAULTS-IN", "-s", IPS["n1"], *original]]
    assert topology.one_way_rules("n3", "n1", "n2", IPS) == []


def test_loss_rules_use_probability_and_spare_loopback_and_the_harness():
    spare, rule = topology.loss_rules(25, spare=["10.213.0.1"])
    assert spare == ["-A", "SD-LOSS", "-s", "10.213.0.1", "-j", "RETURN"]
    assert rule[rule.index("--probability") + 1] == "0.2500"
    assert rule[:5] == ["-A", "SD-LOSS", "!", "-i", "lo"]
    with pytest.raises(ValueError):
        topology.loss_rules(0)


@pytest.mark.parametrize("percent,expected", [(100, 1), (50, 10), (30, 20), (1, None)])
def test_loss_probe_attempts(percent, expected):
    assert topology.loss_probe_attempts(percent) == expected


def test_setup_script_is_idempotent_per_chain():
    script = topology.setup_script("iptables")
    for chain, parent in topology.CHAINS.items():
        assert f"iptables -w -N {chain} 2>/dev/null || true" in script
        assert f"iptables -w -C {parent} -j {chain}" in script


def test_rules_script_stops_at_first_failure():
    script = topology.rules_script("iptables", [["-A", "X", "-j", "DROP"]])
    assert script.splitlines() == ["set -e", "iptables -w -A X -j DROP"]


def test_reachability_mismatches_names_each_wrong_link():
    expected = {("n1", "n2"): False, ("n2", "n1"): True, ("n1", "n3"): True}
    observed = {("n1", "n2"): True, ("n2", "n1"): True}
    assert topology.reachability_mismatches(expected, observed) == [
        "n1 -> n2: expected cut, probe found it open",
        "n1 -> n3: not probed",
    ]
