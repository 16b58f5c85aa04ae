"""``python -m harness check`` on the simulator: replayable, clean on the real node code, failing on broken nodes."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.sim import SimNode

ARGS = ["check", "--backend", "sim", "--nodes", "5", "--duration", "24", "--rate", "8", "--seed", "7"]


def run_check(tmp_path, name: str, *extra: str):
    out = tmp_path / name
    result = CliRunner().invoke(main, [*ARGS, "--out", str(out), *extra])
    return result, out


def test_a_seeded_check_passes_and_replays_byte_for_byte(tmp_path):
    first, a = run_check(tmp_path, "a")
    second, b = run_check(tmp_path, "b")
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert (a / "history.jsonl").read_bytes() == (b / "history.jsonl").read_bytes()
    assert (a / "results.json").read_bytes() == (b / "results.json").read_bytes()
    results = json.loads((a / "results.json").read_text())
    assert (results["lost"], results["resurrected"], results["converged"]) == (0, 0, True)
    assert results["acknowledged"] > 150 and sum(results["faults"].values()) >= 3
    assert results["visible_median_s"] is not None and results["stale_read_max_s"] >= 0
    assert (a / "check.png").stat().st_size > 10_000
    assert "<svg" in (a / "timeline.html").read_text()
    lines = (a / "history.jsonl").read_text().splitlines()
    kinds = {json.loads(line)["kind"] for line in lines}
    assert kinds == {"op", "fault", "read", "final"}


def test_another_seed_draws_another_history(tmp_path):
    _, a = run_check(tmp_path, "a", "--duration", "8")
    other, b = run_check(tmp_path, "b", "--duration", "8", "--seed", "8")
    assert other.exit_code == 0, other.output
    assert (a / "history.jsonl").read_bytes() != (b / "history.jsonl").read_bytes()


def test_every_fault_kind_is_applied_in_the_simulator(tmp_path):
    result, out = run_check(tmp_path, "all", "--duration", "64", "--fault-seconds", "3", "--quiet-seconds", "2.5")
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["faults"]) == {"halves", "isolate", "ring", "bridge", "one-way", "kill", "pause", "loss",
                                      "skew", "delay"}
    assert results["faults_skipped"] == {} and results["faults_failed"] == {}


def test_a_node_whose_deregistrations_never_spread_fails_the_check(tmp_path, monkeypatch):
    real_merge = SimNode.merge

    def merge_without_tombstones(self, entries, source=None):
        return real_merge(self, [e for e in entries if not (e.deleted and e.address.startswith("10."))], source)

    monkeypatch.setattr(SimNode, "merge", merge_without_tombstones)
    result, out = run_check(tmp_path, "broken", "--faults", "")
    assert result.exit_code == 1, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["resurrected"] > 0 and not results["converged"]
    assert "violation" in result.output


def test_a_merge_that_drops_a_clients_registrations_fails_the_check(tmp_path, monkeypatch):
    real_merge = SimNode.merge

    def merge_dropping(self, entries, source=None):
        return real_merge(self, [e for e in entries if not e.address.startswith("10.1.1.")], source)

    monkeypatch.setattr(SimNode, "merge", merge_dropping)
    result, out = run_check(tmp_path, "dropping", "--faults", "kill")
    assert result.exit_code == 1, result.output
    assert not json.loads((out / "results.json").read_text())["converged"]


@pytest.mark.parametrize("faults", ["kill,nonsense", "partition"])
def test_an_unknown_fault_kind_is_refused_before_anything_runs(tmp_path, faults):
    result, out = run_check(tmp_path, "bad", "--faults", faults)
    assert result.exit_code == 2
    assert "unknown fault kinds" in result.output
    assert not out.exists()


def test_a_node_that_acknowledges_writes_it_never_stores_fails_the_check(tmp_path, monkeypatch):
    from harness.sim import SimCluster

    real_register = SimCluster.register

    def forgetful(self, node, address, app_name, last_update=None):
        if address.startswith("10.1.2."):   # client 2's own addresses: acknowledged, never written
            return {"address": address, "app_name": app_name, "version": 10**6}
        return real_register(self, node, address, app_name, last_update)

    monkeypatch.setattr(SimCluster, "register", forgetful)
    result, out = run_check(tmp_path, "forgetful", "--faults", "")
    assert result.exit_code == 1, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["lost"] >= 1 and results["resurrected"] == 0 and results["converged"]
    assert {w["address"] for w in results["lost_writes"]} <= {"10.1.2.1:8080", "10.1.2.2:8080"}
