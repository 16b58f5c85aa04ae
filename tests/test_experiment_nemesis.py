"""The experiment's one nemesis: the fault plan, and applying/undoing it the same way on any cluster."""

from __future__ import annotations

import random

import pytest

from harness.experiment import Sweep, run
from harness.experiment.nemesis import Nemesis, plan
from tests.test_experiment import FakeCluster

NODES = [f"n{k}" for k in range(1, 9)]


def test_plan_splits_the_cluster_in_halves_with_the_origin_in_the_first():
    p = plan("partition-heal", NODES, random.Random(1))
    first, second = p.groups
    assert len(first) == len(second) == 4 and sorted(first + second, key=lambda n: int(n[1:])) == NODES
    assert p.origin in first and p.victim is None and p.faulty


def test_plan_kills_a_victim_other_than_the_origin_and_is_reproducible():
    plans = [plan("kill-restart", NODES, random.Random(seed)) for seed in range(20)]
    assert all(p.victim != p.origin and p.groups is None for p in plans)
    assert plans == [plan("kill-restart", NODES, random.Random(seed)) for seed in range(20)]
    quiet = plan("none", NODES, random.Random(3))
    assert quiet.origin in NODES and not quiet.faulty


class Recorder:
    """A cluster that only records the fault operations called on it."""

    def __init__(self):
        self.calls = []

    def partition(self, groups):
        self.calls.append(("partition", groups))

    def heal(self):
        self.calls.append(("heal",))

    def kill(self, node):
        self.calls.append(("kill", node))

    def start(self, node):
        self.calls.append(("start", node))


def test_nemesis_applies_and_undoes_once_recording_when():
    cluster, now = Recorder(), iter([10.0, 10.1, 11.0, 11.2])
    p = plan("partition-heal", NODES, random.Random(2))
    nemesis = Nemesis(cluster, p, clock=lambda: next(now), after_heal=lambda: cluster.calls.append(("loss",)))
    nemesis.apply()
    assert nemesis.active
    nemesis.undo()
    nemesis.undo()  # a second undo does nothing
    assert cluster.calls == [("partition", p.groups), ("heal",), ("loss",)]
    faults = nemesis.faults(t0=10.0, interval=0.5)
    assert [(f["event"], f["t"], f["round"]) for f in faults] == [
        ("partition", 0.0, 0.0), ("partitioned", 0.1, 0.2), ("heal", 1.0, 2.0), ("healed", 1.2, 2.4)]


def test_nemesis_without_fault_touches_nothing():
    cluster = Recorder()
    nemesis = Nemesis(cluster, plan("none", NODES, random.Random(0)), clock=lambda: 0.0)
    nemesis.apply()
    nemesis.undo()
    assert cluster.calls == [] and nemesis.faults(0.0, 0.2) == []


class FaultyFake(FakeCluster, Recorder):
    """The Docker backend's fake cluster, recording faults too."""

    def __init__(self, **kwargs):
        FakeCluster.__init__(self, **kwargs)
        Recorder.__init__(self)


def test_docker_backend_runs_the_same_nemesis(tmp_path):
    made = []

    def factory(**kwargs):
        made.append(FaultyFake(**kwargs))
        return made[-1]

    sweep = Sweep(nodes=(4,), repeats=1, backends=("docker",), rest_rounds=1, seed=4, fault="kill-restart",
                  fault_rounds=1)
    summary = run(sweep, tmp_path, cluster_factory=factory)
    kinds = [c[0] for c in made[0].calls if isinstance(c, tuple)]
    assert kinds == ["kill", "start"]
    assert summary["groups"][0]["fault_end_s_mean"] == pytest.approx(0.2, abs=0.15)
