"""The fault around each trial, planned once and applied the same way on every backend.

``plan`` draws the registering node and the fault's targets; ``Nemesis`` applies that plan
through ``harness.contract.ClusterLike`` operations (``partition``/``heal``,
``kill``/``start``), undoes it, and records the instant before and after each operation
on the backend's own clock (virtual seconds in the simulator, wall-clock seconds in Docker).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Sequence

from ..contract import ClusterLike
from ..topology import sort_nodes


@dataclasses.dataclass(frozen=True)
class Plan:
    """Who registers, and what the fault does: cut the cluster into ``groups`` or kill ``victim``."""

    origin: str
    groups: list[list[str]] | None = None
    victim: str | None = None

    @property
    def faulty(self) -> bool:
        """Whether there is anything to apply and undo."""
        return self.groups is not None or self.victim is not None


def plan(fault: str, nodes: Sequence[str], rng: random.Random) -> Plan:
    """Choose the registering node and the fault's targets.

    partition-heal: the nodes split half/half at random, the origin in the first half;
    kill-restart: one victim that is not the origin; none: only the origin.
    """
    nodes = list(nodes)
    if fault == "partition-heal":
        shuffled = nodes[:]
        rng.shuffle(shuffled)
        half = len(shuffled) // 2
        groups = [sort_nodes(shuffled[:half]), sort_nodes(shuffled[half:])]
        return Plan(origin=rng.choice(groups[0]), groups=groups)
    origin = rng.choice(nodes)
    if fault == "kill-restart":
        return Plan(origin=origin, victim=rng.choice([n for n in nodes if n != origin]))
    return Plan(origin=origin)


class Nemesis:
    """Apply a ``Plan``'s fault to a cluster, undo it once, and keep the instants of each step.

    ``after_heal`` runs after ``heal()``: heal removes every network fault, loss included,
    so a backend running with loss puts it back there.
    """

    def __init__(self, cluster: ClusterLike, plan: Plan, clock: Callable[[], float],
                 after_heal: Callable[[], None] = lambda: None) -> None:
        self.cluster, self.plan, self.clock, self.after_heal = cluster, plan, clock, after_heal
        self.events: list[tuple[str, float, dict]] = []  # (event, clock instant, details)
        self.active = False

    def _around(self, before: str, after: str, action: Callable[[], object], **details) -> None:
        """Run ``action`` between two recorded events."""
        self.events.append((before, self.clock(), details))
        action()
        self.events.append((after, self.clock(), details))

    def apply(self) -> None:
        """Cut the cluster or kill the victim, as planned (nothing for a fault-free plan)."""
        groups, victim = self.plan.groups, self.plan.victim
        if groups is not None:
            self._around("partition", "partitioned", lambda: self.cluster.partition(groups), groups=groups)
        if victim is not None:
            self._around("kill", "killed", lambda: self.cluster.kill(victim), node=victim)
        self.active = self.plan.faulty

    def undo(self) -> None:
        """Heal the cut or start the victim again; a no-op when nothing is applied."""
        if not self.active:
            return
        self.active = False
        victim = self.plan.victim
        if self.plan.groups is not None:
            self._around("heal", "healed", self.cluster.heal)
            self.after_heal()
        if victim is not None:
            self._around("start", "started", lambda: self.cluster.start(victim), node=victim)

    def faults(self, t0: float, interval: float) -> list[dict]:
        """The recorded events relative to ``t0``: {"event", "t" (seconds), "round", details}."""
        return [{"event": event, "t": round(t - t0, 4), "round": round((t - t0) / interval, 2), **details}
                for event, t, details in self.events]
