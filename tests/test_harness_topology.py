"""Node names and partition groups, without Docker."""


import pytest

from harness import topology
from harness.errors import InvalidPartition, NodeNotFound

NODES = ["n1", "n2", "n3", "n4", "n5"]


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
