"""Network faults planned as data: which node gets which rules, and what the probe must see."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError, InvalidPartition, NodeNotFound
from harness.netfaults import plan

NODES = ["n1", "n2", "n3", "n4"]
IPS = {n: f"10.213.0.{10 + int(n[1:])}" for n in NODES}


def test_partition_plans_rules_for_running_nodes_and_expects_cuts_across_groups():
    full, p = plan.partition([["n1", "n2"]], NODES, running=["n1", "n2", "n3"], ips=IPS)
    assert full == [["n1", "n2"], ["n3", "n4"]]
    assert sorted(p.steps) == ["n1", "n2", "n3"]  # n4 is down: no rules, no probe
    assert p.steps["n1"].flush == ("SD-FAULTS-IN", "SD-FAULTS-OUT")
    assert p.steps["n3"].rules == (("-A", "SD-FAULTS-OUT", "-d", IPS["n1"], "-j", "DROP"),
                                   ("-A", "SD-FAULTS-IN", "-s", IPS["n1"], "-j", "DROP"),
                                   ("-A", "SD-FAULTS-OUT", "-d", IPS["n2"], "-j", "DROP"),
                                   ("-A", "SD-FAULTS-IN", "-s", IPS["n2"], "-j", "DROP"))
    assert p.expect == {("n1", "n2"): True, ("n2", "n1"): True, ("n1", "n3"): False, ("n3", "n1"): False,
                        ("n2", "n3"): False, ("n3", "n2"): False}


def test_cut_plans_any_shape_of_links_on_both_ends_and_expects_only_those_cut():
    p = plan.cut([("n1", "n3"), ("n2", "n4")], running=NODES, ips=IPS)  # a ring n1-n2-n3-n4 without diagonals
    assert p.steps["n3"].flush == ("SD-FAULTS-IN", "SD-FAULTS-OUT")
    assert p.steps["n3"].rules == (("-A", "SD-FAULTS-OUT", "-d", IPS["n1"], "-j", "DROP"),
                                   ("-A", "SD-FAULTS-IN", "-s", IPS["n1"], "-j", "DROP"))
    cut = {link for link, open_ in p.expect.items() if not open_}
    assert cut == {("n1", "n3"), ("n3", "n1"), ("n2", "n4"), ("n4", "n2")}
    assert len(p.expect) == 12


@pytest.mark.parametrize("groups,error", [
    ([["n1"], ["n9"]], NodeNotFound), ([["n1", "n2"], ["n2"]], InvalidPartition), ([NODES], InvalidPartition),
])
def test_partition_is_validated_before_anything_runs(groups, error):
    with pytest.raises(error):
        plan.partition(groups, NODES, NODES, IPS)


def test_one_way_plans_src_output_and_dst_input_and_keeps_the_way_back():
    p = plan.one_way("n2", "n3", NODES, NODES, IPS, back_open=False)
    assert set(p.steps) == {"n2", "n3"} and not p.steps["n2"].flush  # adds to an existing partition
    assert p.steps["n2"].rules[0][:4] == ("-A", "SD-FAULTS-OUT", "-d", IPS["n3"])
    assert p.steps["n3"].rules[0][:4] == ("-A", "SD-FAULTS-IN", "-s", IPS["n2"])
    assert p.expect == {("n2", "n3"): False, ("n3", "n2"): False}


@pytest.mark.parametrize("src,dst,running,message", [
    ("n1", "n1", NODES, "two different nodes"),
    ("n1", "n2", ["n1"], "n2 is not running"),
    ("n1", "n7", NODES, "no node 'n7'"),
])
def test_one_way_refuses(src, dst, running, message):
    with pytest.raises(HarnessError, match=message):
        plan.one_way(src, dst, NODES, running, IPS, back_open=True)


def test_heal_flushes_all_chains_clears_tc_and_expects_every_link_open():
    p = plan.heal(["n1", "n3"])
    assert p.steps["n1"] == plan.Step(flush=("SD-FAULTS-IN", "SD-FAULTS-OUT", "SD-LOSS"), tc=plan.TC_CLEAR)
    assert p.expect == {("n1", "n3"): True, ("n3", "n1"): True}


def test_loss_checks_statistically_from_a_running_peer():
    p = plan.loss("n1", 50, running=["n1", "n3"], spare=["10.213.0.1"])
    assert p.steps["n1"].flush == ("SD-LOSS",) and p.steps["n1"].rules[0] == (
        "-A", "SD-LOSS", "-s", "10.213.0.1", "-j", "RETURN")
    assert p.loss == plan.LossCheck("n1", 50.0, "n3", 10)
    assert plan.loss("n1", 0, running=["n1"]).loss is None
    with pytest.raises(HarnessError, match="within 0..100"):
        plan.loss("n1", 120, running=["n1"])


def test_delay_uses_netem_and_zero_clears_it():
    p = plan.delay("n2", 40, running=["n1", "n2"])
    assert p.steps["n2"].tc == ("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "40ms")
    assert p.delay == plan.DelayCheck("n2", 40.0, "n1")
    assert plan.delay("n2", 0, running=["n2"]).steps["n2"].tc == plan.TC_CLEAR


def test_script_creates_chains_then_flushes_then_appends():
    step = plan.Step(flush=("SD-LOSS",), rules=(("-A", "SD-LOSS", "-j", "DROP"),))
    lines = plan.script(step, "iptables-legacy").splitlines()
    assert lines.index("iptables-legacy -w -F SD-LOSS 2>/dev/null || true") < lines.index(
        "iptables-legacy -w -A SD-LOSS -j DROP")
    assert "iptables-legacy -w -N SD-LOSS 2>/dev/null || true" in lines[:lines.index(
        "iptables-legacy -w -F SD-LOSS 2>/dev/null || true")]
