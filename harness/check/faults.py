"""Applying and undoing scheduled faults on a backend, and recording what really happened.

``SimFaults`` and ``DockerFaults`` turn a ``nemesis.Fault`` into cluster operations;
``Nemesis`` runs them, writes ``start``/``end`` events into the history and counts
faults applied. A fault the backend cannot apply (found by the capability probe, or
raising ``FaultNotSupported``) is recorded as ``skipped``; one whose effect the probe
does not confirm (``FaultNotApplied``) or that fails otherwise as ``failed``: neither
counts as applied.
"""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..errors import FaultNotApplied, FaultNotSupported, HarnessError
from .history import History
from .model import FAULT_KINDS, NETWORK_KINDS
from .nemesis import Fault

log = logging.getLogger(__name__)

IPTABLES_KINDS = frozenset({"halves", "isolate", "ring", "bridge", "one-way", "loss"})


class Adapter(Protocol):
    def apply(self, fault: Fault) -> None: ...
    def undo(self, fault: Fault) -> None: ...
    def heal_all(self) -> None: ...


def _links(fault: Fault) -> list[tuple[str, str]]:
    return [(a, b) for a, b in fault.params["cuts"]]


def _apply_common(cluster: Any, fault: Fault) -> bool:
    """Apply the faults both backends do alike; False when ``fault`` is none of them."""
    p = fault.params
    actions: dict[str, Callable[[], Any]] = {
        "halves": lambda: cluster.partition(p.get("groups")),
        "isolate": lambda: cluster.isolate(p.get("node")),
        "ring": lambda: cluster.cut_links(_links(fault)),
        "bridge": lambda: cluster.cut_links(_links(fault)),
        "one-way": lambda: cluster.partition_one_way(p.get("src"), p.get("dst")),
        "kill": lambda: cluster.kill(p.get("node")),
        "pause": lambda: cluster.pause(p.get("node")),
        "skew": lambda: cluster.skew(p.get("node"), p.get("seconds")),
        "delay": lambda: cluster.delay(p.get("node"), p.get("ms")),
    }
    action = actions.get(fault.kind)
    if action is None:
        return False
    action()
    return True


def _undo_common(cluster: Any, fault: Fault) -> None:
    node = fault.params.get("node")
    if fault.kind == "kill":
        cluster.start(node)
    elif fault.kind == "pause":
        cluster.unpause(node)
    elif fault.kind == "skew":
        cluster.skew(node, 0.0)
    elif fault.kind in NETWORK_KINDS:
        cluster.heal()


class SimFaults:
    """Faults on a ``SimCluster``; loss there drops messages on every link, not one node's."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.unsupported: dict[str, str] = {}

    def apply(self, fault: Fault) -> None:
        if fault.kind == "loss":
            self.cluster.loss(fault.params["percent"])
        elif not _apply_common(self.cluster, fault):
            raise FaultNotSupported(f"unknown fault kind {fault.kind!r}")

    def undo(self, fault: Fault) -> None:
        _undo_common(self.cluster, fault)

    def heal_all(self) -> None:
        self.cluster.heal()
        for node in self.cluster.nodes:
            self.cluster.start(node)
            self.cluster.skew(node, 0.0)


class DockerFaults:
    """Faults on a Docker (or swarm) ``Cluster``, each probed for effect by the cluster itself."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.unsupported: dict[str, str] = {}

    def probe(self, kinds: Iterable[str]) -> dict[str, str]:
        """Find which of ``kinds`` this engine cannot apply (iptables, tc netem): kind -> why."""
        kinds = set(kinds)
        node = self.cluster.nodes[0]
        if kinds & IPTABLES_KINDS:
            try:
                self.cluster.faults.iptables(node)
            except FaultNotSupported as exc:
                self.unsupported.update({k: str(exc) for k in kinds & IPTABLES_KINDS})
        if "delay" in kinds:
            try:
                self.cluster.delay(node, 50)
            except (FaultNotSupported, FaultNotApplied) as exc:
                self.unsupported["delay"] = str(exc).splitlines()[0]
            finally:
                self._quietly(lambda: self.cluster.delay(node, 0))
        return dict(self.unsupported)

    def apply(self, fault: Fault) -> None:
        if fault.kind == "loss":
            self.cluster.loss(fault.params["node"], fault.params["percent"])
        elif not _apply_common(self.cluster, fault):
            raise FaultNotSupported(f"unknown fault kind {fault.kind!r}")

    def undo(self, fault: Fault) -> None:
        _undo_common(self.cluster, fault)

    def heal_all(self) -> None:
        """Thaw, start and unskew every node, then remove every network fault."""
        c = self.cluster
        for node, state in c.states().items():
            if state == "paused" or (state == "running" and self._quietly(functools.partial(c.faults.stopped, node))):
                self._quietly(functools.partial(c.unpause, node))
            elif state != "running":
                self._quietly(functools.partial(c.start, node))
        for node in c.nodes:
            self._quietly(functools.partial(c.skew, node, 0.0))
        c.heal()

    @staticmethod
    def _quietly(action: Callable[[], Any]) -> Any:
        try:
            return action()
        except HarnessError as exc:
            log.warning("while healing: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return None


class Nemesis:
    """Runs scheduled faults through an adapter, recording each event on ``clock``."""

    def __init__(self, adapter: Adapter, history: History, clock: Callable[[], float],
                 unsupported: dict[str, str] | None = None) -> None:
        self.adapter, self.history, self.clock = adapter, history, clock
        self.unsupported = dict(unsupported or {})
        self.applied: collections.Counter[str] = collections.Counter()
        self.skipped: collections.Counter[str] = collections.Counter()
        self.failed: collections.Counter[str] = collections.Counter()
        self.active: Fault | None = None

    def start(self, fault: Fault) -> None:
        """Apply ``fault`` unless the backend cannot; record what happened."""
        if fault.kind in self.unsupported:
            self.skipped[fault.kind] += 1
            self.history.fault("skipped", self.clock(), reason=self.unsupported[fault.kind], **fault.describe())
            return
        t = self.clock()
        try:
            self.adapter.apply(fault)
        except FaultNotSupported as exc:
            self.unsupported[fault.kind] = str(exc).splitlines()[0]
            self.skipped[fault.kind] += 1
            self.history.fault("skipped", t, reason=self.unsupported[fault.kind], **fault.describe())
            return
        except Exception as exc:  # noqa: BLE001 - a fault that fails is recorded, the run goes on
            log.warning("applying %s failed: %s", fault.kind, exc)
            self.failed[fault.kind] += 1
            self.history.fault("failed", t, reason=str(exc).splitlines()[0], **fault.describe())
            self._undo(fault)
            return
        self.applied[fault.kind] += 1
        self.active = fault
        self.history.fault("start", t, effective=round(self.clock(), 4), **fault.describe())

    def end(self, fault: Fault) -> None:
        """Undo ``fault`` if it was applied."""
        if self.active is not fault:
            return
        t = self.clock()
        self._undo(fault)
        self.active = None
        self.history.fault("end", t, effective=round(self.clock(), 4), **fault.describe())

    def _undo(self, fault: Fault) -> None:
        try:
            self.adapter.undo(fault)
        except Exception as exc:  # noqa: BLE001 - the final heal_all retries what failed here
            log.warning("undoing %s failed: %s", fault.kind, exc)
            self.history.fault("undo-failed", self.clock(), reason=str(exc).splitlines()[0], **fault.describe())

    def heal_all(self) -> None:
        """Undo everything (the end of the run): network healed, nodes running, clocks true."""
        t = self.clock()
        try:
            self.adapter.heal_all()
        except Exception as exc:  # noqa: BLE001 - the verdict still comes: convergence will say what stayed broken
            log.warning("final heal failed: %s", exc)
            self.history.fault("heal-failed", t, reason=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        self.history.fault("heal-all", t, effective=round(self.clock(), 4))

    def counts(self) -> dict[str, dict[str, Any]]:
        """Applied, skipped and failed faults by kind."""
        return {"applied": {k: self.applied[k] for k in FAULT_KINDS if self.applied[k]},
                "skipped": {k: self.skipped[k] for k in FAULT_KINDS if self.skipped[k]},
                "failed": {k: self.failed[k] for k in FAULT_KINDS if self.failed[k]},
                "unsupported": dict(sorted(self.unsupported.items()))}
