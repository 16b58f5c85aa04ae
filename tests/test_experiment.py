"""The convergence experiment: sim sweeps end to end, theory figures, sim-vs-docker agreement."""

from __future__ import annotations

import csv
import json
import math
import time

import pytest
from click.testing import CliRunner

from harness import cli, theory
from harness.experiment import CSV_COLUMNS, Sweep, agreement, run
from harness.experiment.engine import counter_delta, round_rate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    sweep = Sweep(nodes=(5, 8), repeats=2, sim_modes=("async", "sync"), seed=3)
    return out, run(sweep, out)


def test_sim_sweep_writes_one_csv_row_per_trial_and_node(sim_run):
    out, _ = sim_run
    with open(out / "trials.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    # (5 + 8 nodes) x 2 modes x 2 repeats
    assert len(rows) == (5 + 8) * 2 * 2
    assert {r["mode"] for r in rows} == {"async", "sync"}
    for trial in {r["trial"] for r in rows}:
        mine = [r for r in rows if r["trial"] == trial]
        assert len(mine) == int(mine[0]["n"])
        origin = [r for r in mine if r["is_origin"] == "True"]
        assert len(origin) == 1 and origin[0]["round"] == "0" and origin[0]["node"] == origin[0]["origin"]
        assert all(r["informed"] == "True" for r in mine)
        assert max(int(r["round"]) for r in mine) == int(mine[0]["trial_rounds_to_all"]) >= 1
        assert int(mine[0]["trial_bytes"]) > 0 and int(mine[0]["trial_exchanges"]) > 0


def test_sim_sweep_summary_and_plots(sim_run):
    out, summary = sim_run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["groups"] == json.loads(json.dumps(summary["groups"]))
    groups = {(g["mode"], g["n"]): g for g in on_disk["groups"]}
    assert set(groups) == {("async", 5), ("sync", 5), ("async", 8), ("sync", 8)}
    for g in groups.values():
        assert g["trials"] == g["complete"] == 2
        assert g["rounds_mean"] >= 1
        assert g["theory"]["push_pull_mean"] is not None and g["theory"]["serf_rounds"] >= 1
        assert g["bytes_per_node_s_rest"] > 0
    assert on_disk["agreement"] == []  # no Docker group
    for name in ("dissemination.png", "rounds_vs_n.png", "bytes_vs_n.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and 5_000 < len(data) < 300_000, name


def test_synchronous_sim_matches_the_push_pull_table(tmp_path):
    summary = run(Sweep(nodes=(50,), repeats=12, sim_modes=("sync", "async"), seed=1), tmp_path)
    groups = {g["mode"]: g for g in summary["groups"]}
    sync, async_ = groups["sync"], groups["async"]
    assert sync["theory"]["push_pull_mean"] == 3.2  # N=50 is a row of the table
    assert 1 / theory.TARGET_FACTOR <= sync["ratio_to_push_pull"] <= theory.TARGET_FACTOR
    assert sync["within_target"] is True
    # out-of-phase nodes relay news within a round: never slower than synchronous rounds
    assert async_["rounds_mean"] <= sync["rounds_mean"]


def test_partition_heal_reaches_the_far_side_only_after_the_heal(tmp_path):
    sweep = Sweep(nodes=(8,), repeats=2, fault="partition-heal", fault_rounds=4, seed=2)
    summary = run(sweep, tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "trials.csv", newline="")))
    assert all(r["informed"] == "True" for r in rows)
    assert min(int(r["trial_rounds_to_all"]) for r in rows) > 4
    # at least 4 nodes (the far half) cannot have it before the heal
    per_trial = {}
    for r in rows:
        per_trial.setdefault(r["trial"], []).append(int(r["round"]))
    assert all(sum(1 for x in rs if x > 4) >= 4 for rs in per_trial.values())
    group = summary["groups"][0]
    assert group["within_target"] is None  # the theory target is for fault-free runs
    assert group["fault_end_s_mean"] == pytest.approx(4 * 0.2)
    # informed at phases inside the rounds after the heal: the mean of the fractional
    # rounds after it lies within one round below the whole rounds after it
    assert group["rounds_mean"] - 5 < group["rounds_after_fault_mean"] <= group["rounds_mean"] - 4 + 1e-9


def test_kill_restart_victim_is_informed_after_its_restart(tmp_path):
    run(Sweep(nodes=(6,), repeats=2, fault="kill-restart", fault_rounds=3, seed=5), tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "trials.csv", newline="")))
    assert all(r["informed"] == "True" for r in rows)
    # the victim is a node that is not the origin and is informed after round 3
    for trial in {r["trial"] for r in rows}:
        late = [r for r in rows if r["trial"] == trial and int(r["round"]) > 3]
        assert late and all(r["is_origin"] == "False" for r in late)


# -- theory -------------------------------------------------------------------------------


def test_serf_model_gives_the_reference_rounds():
    assert math.ceil(theory.serf_rounds(30, 3)) == 9
    assert math.ceil(theory.serf_rounds(1000, 3)) == 11
    assert math.ceil(theory.serf_rounds(1000, 3, loss=0.5)) == 22
    r = theory.serf_rounds(30, 3)
    assert theory.serf_fraction(30, r, 3) == pytest.approx(theory.SERF_TARGET)
    assert theory.serf_fraction(30, 0, 3) == pytest.approx(1 / 32)


def test_push_pull_table_and_interpolation():
    assert theory.table_rounds(100, 3) == {"mean": 3.9, "p99": 4.0, "exact": True}
    assert theory.table_rounds(1000, 1)["mean"] == 9.2
    mid = theory.table_rounds(20, 3)
    assert not mid["exact"] and 2.0 < mid["mean"] < 3.2
    assert theory.table_rounds(40, 2)["mean"] < theory.table_rounds(50, 2)["mean"]
    assert theory.table_rounds(10, 4) is None
    assert theory.log3(27) == pytest.approx(3)
    ref = theory.reference(1000, 3)
    assert (ref["push_pull_mean"], ref["push_pull_p99"], ref["serf_rounds"]) == (5.1, 6.0, 11)


# -- agreement ------------------------------------------------------------------------------


def _group(backend, mode, n, mean):
    return {"backend": backend, "mode": mode, "n": n, "fanout": 3, "interval": 0.2, "loss": 0.0,
            "fault": "none", "rounds_mean": mean}


def test_agreement_ratio_and_the_25_percent_limit():
    rows = agreement([
        _group("sim", "sync", 5, 9.0), _group("sim", "async", 5, 2.0), _group("docker", "real", 5, 2.4),
        _group("sim", "async", 10, 2.0), _group("docker", "real", 10, 2.6),
        _group("docker", "real", 20, 3.0),  # no sim at N=20: no pair
    ])
    assert [(a["n"], a["sim_mode"], a["ratio"], a["diff"], a["agree"]) for a in rows] == [
        (5, "async", 1.2, 0.2, True),
        (10, "async", 1.3, 0.3, False),
    ]
    below = agreement([_group("sim", "async", 5, 2.0), _group("docker", "real", 5, 1.4)])
    assert below[0]["diff"] == 0.3 and not below[0]["agree"]


# -- docker backend, against a fake cluster ------------------------------------------------


class FakeCluster:
    """Nodes n1..nN that learn a registration 0.15 s apart (node k at (k-1) x 0.15 s)."""

    def __init__(self, nodes, name, image, interval, fanout, timeline, start_timeout):
        self.nodes = [f"n{k}" for k in range(1, nodes + 1)]
        self.registered: dict[str, float] = {}
        self.calls = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.calls.append("down")
        return False

    def register(self, node, address, app_name):
        self.registered[address] = time.time()
        self.origin = node
        return {}

    def view(self, node):
        out = {f"n{k}:5000": {"app_name": "service-discovery", "status": "healthy", "deleted": False}
               for k in range(1, len(self.nodes) + 1)}
        for address, t in self.registered.items():
            k = int(node[1:]) - (int(self.origin[1:]) if node != self.origin else int(node[1:]))
            at = t + abs(k) * 0.15
            if time.time() >= at:
                out[address] = {"seen_at": at, "seen_round": 7}
        return out

    def views(self, nodes, path="/registry/list"):
        assert path == "/registry/entries"
        return {n: self.view(n) for n in nodes}

    def metrics(self, nodes):
        return {n: {"sd_gossip_bytes_sent_total": 1000.0 * time.time() % 1e6, "sd_gossip_exchanges_ok_total": 5.0,
                    "sd_gossip_exchanges_failed_total": 0.0, "sd_gossip_rounds_total": 5 * time.time()}
                for n in nodes}


def test_docker_trial_takes_rounds_from_the_nodes_first_seen_times(tmp_path):
    sweep = Sweep(nodes=(4,), repeats=1, backends=("docker",), rest_rounds=1, seed=4)
    summary = run(sweep, tmp_path, cluster_factory=FakeCluster)
    rows = list(csv.DictReader(open(tmp_path / "trials.csv", newline="")))
    assert len(rows) == 4 and all(r["backend"] == "docker" and r["mode"] == "real" for r in rows)
    by_gap = sorted(float(r["seconds"]) for r in rows)
    assert by_gap[0] == 0.0
    for r in rows:
        frac = float(r["seconds"]) / 0.2
        assert float(r["round_frac"]) == pytest.approx(frac, abs=1e-3)
        assert int(r["round"]) == math.ceil(frac - 1e-9)
        assert r["node_round"] in ("7", "")
        assert float(r["trial_round_rate"]) == pytest.approx(5.0, rel=0.05)  # from Cluster.metrics
    assert summary["groups"][0]["backend"] == "docker"


def test_counter_delta_sums_gains_and_restarts_count_from_zero():
    before = {"n1": {"sd_gossip_bytes_sent_total": 900.0, "sd_gossip_exchanges_ok_total": 9.0}}
    # n1 restarted between the two scrapes: its counters count from zero; n2 is new
    after = {"n1": {"sd_gossip_bytes_sent_total": 100.0, "sd_gossip_exchanges_ok_total": 2.0},
             "n2": {"sd_gossip_bytes_sent_total": 50.0, "sd_gossip_exchanges_failed_total": 1.0}}
    assert counter_delta(before, after) == (3, 150)
    grown = {"n1": {"sd_gossip_bytes_sent_total": 1000.0, "sd_gossip_exchanges_ok_total": 12.0}}
    assert counter_delta(before, grown) == (3, 100)


# -- command line -----------------------------------------------------------------------------


def test_experiment_command_prints_the_summary_and_writes_the_run_folder(tmp_path):
    result = CliRunner().invoke(cli.main, ["experiment", "--backend", "sim", "--nodes", "5,10", "--repeats", "2",
                                           "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "sim/async" in result.output and "run folder" in result.output
    assert (tmp_path / "r" / "summary.json").exists()


def test_experiment_command_rejects_bad_lists():
    result = CliRunner().invoke(cli.main, ["experiment", "--nodes", "5,x"])
    assert result.exit_code != 0 and "comma-separated integers" in result.output



def test_docker_round_rate_shows_rounds_skipped_by_an_overloaded_host():
    key = "sd_gossip_rounds_total"
    before = {"n1": {key: 100.0}, "n2": {key: 50.0}, "n3": {key: 7.0}}
    # n1 ran all 10 rounds of 2 s at 200 ms, n2 only 6; n3 restarted (counter went back): left out
    after = {"n1": {key: 110.0}, "n2": {key: 56.0}, "n3": {key: 2.0}}
    assert round_rate(before, after, 2.0) == pytest.approx(4.0)
    assert round_rate(before, {}, 2.0) is None
