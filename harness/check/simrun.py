"""Running a check on the simulator: everything happens between gossip rounds on the virtual clock.

Before each round, due faults are applied or undone, due operations performed and
every node's view polled; then the round runs. Nothing reads a wall clock, so a seed
replays exactly (same ``history.jsonl``, same ``results.json``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .client import SimClient, perform
from .faults import Nemesis, SimFaults
from .history import History
from .model import Settings
from .plan import BOOT_TIMEOUT, draw, finish, timeline


def run_sim(settings: Settings, history: History) -> dict[str, Any]:
    """Run the check on a ``SimCluster``; return the final record and the fault counts."""
    from ..sim import SIM, SimCluster  # noqa: PLC0415 - only the simulator path loads node code

    config = dataclasses.replace(SIM, interval=settings.interval, ttl=settings.ttl, expire_grace=settings.grace,
                                 tombstone_ttl=max(SIM.tombstone_ttl, 3 * (settings.ttl + settings.grace)))
    cluster = SimCluster(settings.nodes, config=config, seed=settings.seed)
    cluster.wait_converged(timeout=BOOT_TIMEOUT)
    t0 = cluster.clock.now()

    def clock() -> float:
        return cluster.clock.now() - t0

    plan = draw(settings, cluster.nodes)
    nemesis = Nemesis(SimFaults(cluster), history, clock)
    client = SimClient(cluster)
    events = timeline(plan)
    i = 0
    while clock() < settings.duration - 1e-9:
        while i < len(events) and events[i][0] <= clock() + 1e-9:
            _do(events[i], nemesis, client, clock, cluster.clock.now, history)
            i += 1
        history.read(clock(), cluster.views(), plan.addresses)
        cluster.step()
    for event in events[i:]:
        _do(event, nemesis, client, clock, cluster.clock.now, history)
    final = finish(cluster, nemesis, history, clock, settings)
    return {"final": final, "faults": nemesis.counts(), "schedule": [f.describe() for f in plan.faults]}


def _do(event: tuple[float, int, str, Any], nemesis: Nemesis, client: SimClient, clock: Callable[[], float],
        wall: Callable[[], float], history: History) -> None:
    _, _, what, item = event
    if what == "start":
        nemesis.start(item)
    elif what == "end":
        nemesis.end(item)
    else:
        perform(item, client, clock, wall, history)
