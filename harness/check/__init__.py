"""Jepsen-style checking of a running cluster: a seeded workload under a seeded nemesis, then a verdict.

``run(settings, folder)`` starts a cluster (the simulator or Docker), lets clients
register, renew and deregister addresses at a set rate while faults come and go on a
schedule, records every operation, fault and poll in ``history.jsonl``, heals
everything, reads every node's final view and hands it all to the checker
(``checker.check``), which counts acknowledged writes lost, deregistered instances
resurrected, convergence, visibility delays and stale reads. ``report`` writes
``results.json``, ``check.png`` and ``timeline.html``.

Modules: ``workload`` (what the clients do), ``client`` and ``history`` (doing it and
writing it down), ``nemesis`` (the fault schedule and the backends' fault adapters),
``checker`` (the rules), ``report`` (the outputs), ``runner`` and ``docker`` (running
it on the simulator and on containers).
"""

from __future__ import annotations

from .model import FAULT_KINDS, Settings
from .runner import run

__all__ = ["FAULT_KINDS", "Settings", "run"]
