"""The checker's rules on hand-built histories, and the pure parts of a check (workload, schedule)."""

from __future__ import annotations

import random

import pytest

from harness.check import checker, nemesis, workload
from harness.check.model import FAULT_KINDS

TTL = 10.0


class Builder:
    """A history written by hand: operations, polls and a final view."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def op(self, op: str, address: str, t: float, version: int | None, outcome: str = "ok", node: str = "n1",
           latency: float = 0.01) -> Builder:
        self.records.append({"kind": "op", "index": len(self.records), "client": 0, "node": node, "op": op,
                             "address": address, "app": "web", "last_update": None, "invoke": t,
                             "complete": t + latency, "outcome": outcome, "version": version, "error": None})
        return self

    def read(self, t: float, **views: dict) -> Builder:
        self.records.append({"kind": "read", "t": t, "views": views})
        return self

    def check(self, final: dict, final_t: float = 20.0, digests: dict | None = None) -> dict:
        digests = digests if digests is not None else {n: "d" for n in final}
        return checker.check(self.records, final, digests, final_t, TTL)


A, B = "10.1.0.1:8080", "10.2.0.1:8080"


def test_a_clean_run_passes_with_its_figures():
    h = (Builder().op("register", A, 10.0, 5).read(10.2, n1={A: 5}, n2={}).read(10.4, n1={A: 5}, n2={A: 5})
         .op("register", B, 11.0, 7).op("deregister", B, 12.0, 9).read(12.2, n1={}, n2={B: 7}).read(12.4, n1={}, n2={}))
    results = h.check({"n1": {A: 5}, "n2": {A: 5}}, final_t=15.0)
    assert (results["lost"], results["resurrected"], results["converged"]) == (0, 0, True)
    assert checker.violations(results) == []
    assert results["visible_max_s"] == pytest.approx(0.39)        # A: acked at 10.01, on both at 10.4
    assert results["stale_read_max_s"] == pytest.approx(0.19)     # B: n2 listed it at 12.2, ack at 12.01
    assert results["acknowledged"] == 3


def test_an_acknowledged_registration_absent_everywhere_is_lost():
    results = Builder().op("register", A, 12.0, 5).check({"n1": {}, "n2": {}}, final_t=15.0)
    assert results["lost"] == 1 and results["loss_judged_addresses"] == 1
    assert results["lost_writes"][0]["address"] == A
    assert "1 acknowledged writes lost" in checker.violations(results)


def test_a_registration_whose_lease_ran_out_may_be_gone():
    results = Builder().op("register", A, 1.0, 5).check({"n1": {}, "n2": {}}, final_t=15.0)
    assert results["lost"] == 0 and results["loss_judged_addresses"] == 0


@pytest.mark.parametrize("outcome,version", [("ok", 9), ("indeterminate", None)])
def test_a_deregister_that_may_have_won_excuses_the_absence(outcome, version):
    h = Builder().op("register", A, 12.0, 5).op("deregister", A, 12.5, version, outcome=outcome, node="n2")
    assert h.check({"n1": {}, "n2": {}}, final_t=15.0)["lost"] == 0


def test_a_deregister_with_an_older_version_cannot_excuse_a_loss():
    h = Builder().op("register", A, 12.0, 9).op("deregister", A, 12.5, 4, node="n2")
    assert h.check({"n1": {}, "n2": {}}, final_t=15.0)["lost"] == 1


def test_an_instance_listed_below_its_tombstone_at_the_end_is_resurrected():
    h = Builder().op("register", A, 1.0, 5).op("deregister", A, 2.0, 8)
    results = h.check({"n1": {}, "n2": {A: 5}}, digests={"n1": "x", "n2": "y"})
    assert results["resurrected"] == 1
    assert results["resurrections"][0]["node"] == "n2"
    assert not results["converged"]


def test_a_version_nobody_wrote_after_a_deregister_is_a_resurrection():
    h = Builder().op("register", A, 1.0, 5).op("deregister", A, 2.0, 8)
    assert h.check({"n1": {A: 11}, "n2": {A: 11}})["resurrected"] == 1


def test_a_later_registration_brings_an_address_back_legitimately():
    h = Builder().op("register", A, 1.0, 5).op("deregister", A, 2.0, 8).op("register", A, 3.0, 11)
    assert h.check({"n1": {A: 11}, "n2": {A: 11}})["resurrected"] == 0


def test_an_address_that_reappears_during_the_run_after_its_deregister_is_a_resurrection():
    h = (Builder().op("register", A, 1.0, 5).read(1.2, n1={A: 5}, n2={A: 5}).op("deregister", A, 2.0, 8)
         .read(2.2, n1={}, n2={}).read(2.4, n1={}, n2={A: 5}).read(2.6, n1={}, n2={}))
    results = h.check({"n1": {}, "n2": {}})
    assert results["resurrected"] == 1
    assert results["resurrections"][0] == {"address": A, "node": "n2", "version": 5, "before": 5, "t": 2.4,
                                           "when": "run"}


def test_a_node_learning_a_registration_late_is_not_a_resurrection():
    h = (Builder().op("register", A, 1.0, 5).read(1.2, n1={A: 5}, n2={}).op("deregister", A, 2.0, 8, node="n1")
         .read(2.2, n1={}, n2={A: 5}).read(2.4, n1={}, n2={}))
    assert h.check({"n1": {}, "n2": {}})["resurrected"] == 0


def test_a_stale_read_window_runs_from_the_ack_to_the_last_listing():
    h = (Builder().op("register", A, 1.0, 5).op("deregister", A, 2.0, 8, latency=0.0)
         .read(2.5, n1={}, n2={A: 5}).read(3.5, n1={}, n2={A: 5}).read(4.0, n1={}, n2={}))
    results = h.check({"n1": {}, "n2": {}})
    assert results["stale_read_max_s"] == pytest.approx(1.5)
    assert results["stale_reads"] == 1
    assert results["resurrected"] == 0


def test_differing_final_digests_or_a_silent_node_are_not_converged():
    assert not Builder().check({"n1": {}, "n2": {}}, digests={"n1": "a", "n2": "b"})["converged"]
    assert not Builder().check({"n1": {}}, digests={"n1": "a", "n2": None})["converged"]


def test_the_workload_keeps_every_live_registration_renewed_within_a_third_of_the_lease():
    ops = workload.Workload(["n1", "n2", "n3"], random.Random(4), renew_every=TTL / 3).plan(60.0, 5.0)
    assert {o.op for o in ops} == {"register", "renew", "deregister"}
    assert any(o.address.startswith("10.2.") for o in ops) and any(o.address.startswith("10.1.") for o in ops)
    last: dict[str, float] = {}
    for o in ops:
        if o.address in last:
            assert o.t - last[o.address] <= TTL / 3 + 1.0, o
        if o.op == "deregister":
            last.pop(o.address, None)
        else:
            last[o.address] = o.t
    owners = {o.address: o.client for o in ops if o.address.startswith("10.1.")}
    assert all(o.client == owners[o.address] for o in ops if o.address.startswith("10.1."))


def test_the_schedule_is_seeded_sequential_and_uses_every_kind():
    nodes = [f"n{i}" for i in range(1, 6)]
    one = nemesis.schedule(FAULT_KINDS, nodes, 120.0, random.Random(3), 4.0, 2.0, TTL)
    assert one == nemesis.schedule(FAULT_KINDS, nodes, 120.0, random.Random(3), 4.0, 2.0, TTL)
    assert {f.kind for f in one} == set(FAULT_KINDS)
    assert all(a.end <= b.start for a, b in zip(one, one[1:], strict=False)) and one[-1].end <= 120.0


@pytest.mark.parametrize("n", [4, 5, 7, 10])
def test_in_a_majorities_ring_every_node_sees_a_majority_but_not_all(n):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    cuts = set(nemesis.ring_cuts(nodes, random.Random(n)))
    for a in nodes:
        sees = 1 + sum((a, b) not in cuts for b in nodes if b != a)
        assert n / 2 < sees < n
    assert all((b, a) in cuts for a, b in cuts)


def test_a_bridge_node_keeps_both_halves_that_are_cut_from_each_other():
    nodes = [f"n{i}" for i in range(1, 6)]
    bridge, cuts = nemesis.bridge_cuts(nodes, random.Random(1))
    assert not any(bridge in link for link in cuts)
    assert len(cuts) == 2 * 2 * 2


def test_a_final_heal_that_fails_is_recorded_and_the_run_goes_on():
    from harness.check.faults import Nemesis
    from harness.check.history import History
    from harness.errors import FaultNotApplied

    class Stuck:
        def heal_all(self):
            raise FaultNotApplied("heal did not take effect: n1 -> n2: expected open, probe found it cut")

    history = History()
    Nemesis(Stuck(), history, lambda: 5.0).heal_all()
    assert history.records == [{"kind": "fault", "event": "heal-failed", "t": 5.0,
                                "reason": "heal did not take effect: n1 -> n2: expected open, probe found it cut"}]
