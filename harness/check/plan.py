"""What a check does, drawn from its seed, and how every run ends.

``draw`` gives the operations and the fault schedule (the same seed and settings give
the same plan on every backend); ``timeline`` orders them; ``finish`` is the end of every
run: heal everything (network, paused and killed nodes, clocks), wait for convergence
(bounded), then read and record every node's final view and digest.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

from ..errors import ConvergenceTimeout
from .faults import Nemesis
from .history import History, stamp
from .model import Settings
from .nemesis import Fault, schedule
from .workload import Op, Workload, pools

BOOT_TIMEOUT = 60.0  # seconds for a fresh cluster's membership to form


@dataclasses.dataclass
class Plan:
    """What a run will do: the operations and the faults, both drawn from the seed."""

    ops: list[Op]
    faults: list[Fault]
    addresses: list[str]


def draw(settings: Settings, nodes: list[str]) -> Plan:
    """The seeded plan for ``nodes``: the same seed and settings give the same plan on every backend."""
    root = random.Random(settings.seed)
    work_rng, fault_rng = random.Random(root.getrandbits(64)), random.Random(root.getrandbits(64))
    ops = Workload(nodes, work_rng, settings.renew_every).plan(settings.duration, settings.rate)
    faults = schedule(settings.faults, nodes, settings.duration, fault_rng, settings.fault_s, settings.quiet_s,
                      settings.ttl)
    own, shared = pools(len(nodes))
    return Plan(ops, faults, sorted(own) + shared)


def timeline(plan: Plan) -> list[tuple[float, int, str, Any]]:
    """Faults and operations in the order they are due (at one instant: fault ends, then starts, then ops)."""
    events: list[tuple[float, int, str, Any]] = []
    for f in plan.faults:
        events += [(f.start, 1, "start", f), (f.end, 0, "end", f)]
    events += [(op.t, 2, "op", op) for op in plan.ops]
    return sorted(events, key=lambda e: (e[0], e[1], getattr(e[3], "index", getattr(e[3], "id", 0))))


def finish(cluster: Any, nemesis: Nemesis, history: History, clock: Callable[[], float],
           settings: Settings) -> dict[str, Any]:
    """Heal everything, wait for convergence (bounded), then record and return every node's final view."""
    nemesis.heal_all()
    healed = clock()
    try:
        cluster.wait_converged(timeout=settings.settle_timeout, nodes=cluster.nodes)
        converge_s: float | None = round(clock() - healed, 4)
    except ConvergenceTimeout:
        converge_s = None
    views = cluster.views(cluster.nodes)
    digests = cluster.digests(cluster.nodes)
    final = {"kind": "final", "t": stamp(clock()), "converge_s": converge_s,
             "views": {n: {a: e.get("version") for a, e in sorted(v.items())} for n, v in sorted(views.items())},
             "digests": {n: digests[n][0] if n in digests else None for n in cluster.nodes}}
    return history.add(final)


