"""Scenarios as lists of steps, run alike on a SimCluster and on a Docker Cluster.

A step is a small object with ``run(cluster)``; it uses only the operations of
``harness.contract.ClusterLike``, which both cluster kinds implement (register,
deregister, partition, heal, kill, start, pause, skew, views, settle,
wait_converged). ``within`` is in seconds: virtual ones in a simulation, wall ones
against containers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .contract import ClusterLike
from .errors import HarnessError


class ScenarioFailed(HarnessError):
    """A step's expectation did not hold."""


class Step(Protocol):
    """One step of a scenario: acts on the cluster or checks it."""

    def run(self, cluster: ClusterLike) -> None:
        """Do the step; raise (ScenarioFailed, ConvergenceTimeout, ...) when it does not hold."""
        ...


@dataclass
class Register:
    node: str
    address: str
    app_name: str

    def run(self, cluster: ClusterLike) -> None:
        cluster.register(self.node, self.address, self.app_name)


@dataclass
class Deregister:
    node: str
    address: str

    def run(self, cluster: ClusterLike) -> None:
        cluster.deregister(self.node, self.address)


@dataclass
class Partition:
    groups: list[list[str]]

    def run(self, cluster: ClusterLike) -> None:
        cluster.partition(self.groups)


@dataclass
class Heal:
    def run(self, cluster: ClusterLike) -> None:
        cluster.heal()


@dataclass
class Fault:
    """Call a one-node fault of ClusterLike by name: kill, start, pause, unpause."""

    action: str
    node: str

    ACTIONS = ("kill", "start", "pause", "unpause")

    def __post_init__(self) -> None:
        if self.action not in self.ACTIONS:
            raise ValueError(f"unknown fault {self.action!r} (one of {', '.join(self.ACTIONS)})")

    def run(self, cluster: ClusterLike) -> None:
        getattr(cluster, self.action)(self.node)


@dataclass
class Skew:
    node: str
    seconds: float

    def run(self, cluster: ClusterLike) -> None:
        cluster.skew(self.node, self.seconds)


@dataclass
class Settle:
    """Let ``seconds`` pass (virtual in a simulation) before the next step."""

    seconds: float

    def run(self, cluster: ClusterLike) -> None:
        cluster.settle(self.seconds)


@dataclass
class Converged:
    """Wait until ``nodes`` (default: all live) agree, with addresses present/absent."""

    within: float
    nodes: list[str] | None = None
    present: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    def run(self, cluster: ClusterLike) -> None:
        cluster.wait_converged(self.within, nodes=self.nodes, expect_present=self.present, expect_absent=self.absent)


@dataclass
class Lacks:
    """Assert that none of ``nodes`` lists ``address`` right now (a cut holds)."""

    nodes: list[str]
    address: str

    def run(self, cluster: ClusterLike) -> None:
        views = cluster.views(self.nodes)
        holders = [n for n in self.nodes if self.address in views.get(n, {})]
        if holders:
            raise ScenarioFailed(f"{self.address} crossed the partition: listed by {', '.join(holders)}")


@dataclass
class AppIs:
    """Assert that every one of ``nodes`` lists ``address`` under ``app_name``."""

    nodes: list[str]
    address: str
    app_name: str

    def run(self, cluster: ClusterLike) -> None:
        views = cluster.views(self.nodes)
        wrong = {n: views.get(n, {}).get(self.address, {}).get("app_name") for n in self.nodes}
        wrong = {n: a for n, a in wrong.items() if a != self.app_name}
        if wrong:
            raise ScenarioFailed(f"{self.address} should be {self.app_name!r} everywhere, got {wrong}")


def run(cluster: ClusterLike, steps: Sequence[Step]) -> None:
    """Run ``steps`` in order on ``cluster``; the first failing step raises."""
    for step in steps:
        step.run(cluster)


# -- the shared scenarios (five nodes n1..n5; ``within`` scaled by the caller) ---------------

LEFT, RIGHT = ["n1", "n2"], ["n3", "n4", "n5"]


def partition_heal(within: float) -> list:
    """Each side of a 2|3 partition converges alone, not across; after heal, all converge."""
    a, b = "10.9.0.1:80", "10.9.0.2:80"
    return [
        Converged(within),
        Partition([LEFT, RIGHT]),
        Register("n1", a, "left-app"),
        Register("n3", b, "right-app"),
        Converged(within, nodes=LEFT, present=[a], absent=[b]),
        Converged(within, nodes=RIGHT, present=[b], absent=[a]),
        Lacks(RIGHT, a),
        Heal(),
        Converged(within, present=[a, b]),
    ]


def deregister_in_partition(within: float) -> list:
    """A deregistration made on one side of a partition stays deleted after heal."""
    x = "10.9.1.1:80"
    return [
        Register("n4", x, "doomed"),
        Converged(within, present=[x]),
        Partition([LEFT, RIGHT]),
        Deregister("n1", x),
        Converged(within, nodes=LEFT, absent=[x]),
        Converged(within, nodes=RIGHT, present=[x]),
        Heal(),
        Converged(within, absent=[x]),
        Settle(3.0),  # many more rounds: nothing brings it back
        Converged(within, absent=[x]),
    ]


def kill_restart(within: float) -> list:
    """A killed node keeps its data across restart and catches up on what it missed."""
    old, new = "10.9.2.1:80", "10.9.2.2:80"
    return [
        Register("n1", old, "before"),
        Converged(within, present=[old]),
        Fault("kill", "n5"),
        Register("n2", new, "during"),
        Converged(within, nodes=["n1", "n2", "n3", "n4"], present=[old, new]),
        Fault("start", "n5"),
        Converged(within, present=[old, new]),
    ]


def skewed_clock(within: float, seconds: float = 600.0) -> list:
    """A node whose clock is ahead cannot make its older write win over a newer one."""
    x = "10.9.3.1:80"
    return [
        Skew("n2", seconds),
        Register("n2", x, "from-skewed-node"),
        Converged(within, present=[x]),
        Register("n1", x, "newer"),
        Converged(within, present=[x]),
        AppIs(["n1", "n2", "n3", "n4", "n5"], x, "newer"),
    ]


SCENARIOS = {
    "partition_heal": partition_heal,
    "deregister_in_partition": deregister_in_partition,
    "kill_restart": kill_restart,
    "skewed_clock": skewed_clock,
}
