"""The network faults of one cluster: plan from its current state, apply and probe, record.

Each method takes a ``Snapshot`` of the cluster (nodes, which run, their IPs) at
the moment it is called, plans the fault as data (``plan``), hands the plan to the
one ``FaultExecutor`` and, once the probe agrees, writes the fault to the timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..timeline import Timeline
from . import plan
from .execute import FaultExecutor


@dataclass(frozen=True)
class Snapshot:
    """What a fault is planned against: the cluster's nodes now."""

    nodes: list[str]                 # every node, n1 first
    running: list[str]               # nodes whose process runs (rules go there, probes run there)
    ips: dict[str, str]              # node -> IP on the cluster network
    harness_sources: list[str] = field(default_factory=list)  # where the harness reaches nodes from


class NetworkFaults:
    """Partition, one-way cut, heal, loss and delay of one cluster, each probed for effect."""

    def __init__(self, executor: FaultExecutor, snapshot: Callable[[], Snapshot], timeline: Timeline):
        self.executor = executor
        self.snapshot = snapshot
        self.timeline = timeline

    def partition(self, groups: Sequence[Iterable[str]]) -> list[list[str]]:
        """Cut the groups from one another on the running nodes; return the full grouping."""
        now = self.snapshot()
        full, fault = plan.partition(groups, now.nodes, now.running, now.ips)
        self.executor.apply(fault)
        self.timeline.record("partition", groups=full, rules_on=now.running,
                             rules_skipped=[n for n in now.nodes if n not in now.running])
        return full

    def cut(self, links: Iterable[tuple[str, str]]) -> None:
        """Cut the given links both ways on the running nodes (replacing earlier cuts); probe every link."""
        now = self.snapshot()
        pairs = [(a, b) for a, b in links]
        self.executor.apply(plan.cut(pairs, now.running, now.ips))
        self.timeline.record("cut", links=[list(link) for link in pairs])

    def one_way(self, src: str, dst: str) -> None:
        """Cut what ``src`` opens towards ``dst``; ``dst -> src`` stays as it is now."""
        now = self.snapshot()
        plan.check_one_way(src, dst, now.nodes, now.running)
        back = self.executor.probe_links(dst, [src])[(dst, src)]
        self.executor.apply(plan.one_way(src, dst, now.nodes, now.running, now.ips, back))
        self.timeline.record("partition_one_way", src=src, dst=dst)

    def heal(self) -> None:
        """Remove every cut, loss and delay on the running nodes; all their links must be open."""
        running = self.snapshot().running
        self.executor.apply(plan.heal(running))
        self.timeline.record("heal", nodes=running)

    def loss(self, node: str, percent: float) -> None:
        """Drop ``percent`` % of what ``node`` receives (sparing the harness); 0 removes it."""
        now = self.snapshot()
        probe = self.executor.apply(plan.loss(node, percent, now.running, spare=now.harness_sources))
        self.timeline.record("loss", node=node, percent=float(percent), probe=probe)

    def delay(self, node: str, ms: float) -> None:
        """Delay what ``node`` sends by ``ms`` with tc netem; 0 removes it."""
        self.executor.apply(plan.delay(node, ms, self.snapshot().running))
        self.timeline.record("delay", node=node, ms=ms if ms > 0 else 0)
