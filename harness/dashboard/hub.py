"""The dashboard's one view of a cluster, shared by every open page.

The hub runs the source's poller (one per dashboard, however many pages are open),
turns each reading into the state the page draws (nodes coloured by digest group, rates,
partition groups, cuts and loss, the tracked address's dissemination beside theory, the
timeline) and serializes it once per change; pages wait on ``wait`` for the next version.
Controls go through ``act``, which checks its arguments, calls the source (the harness
operations) and records the event. The faults drawn are those made through the dashboard.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .. import theory, topology
from ..errors import HarnessError, InvalidPartition, NodeNotFound
from .sources import Reading

log = logging.getLogger(__name__)

MAX_EVENTS = 500
"""Timeline events kept (the oldest are dropped)."""
RATE_WINDOW = 1.0
"""Seconds between two counter samples a rate is computed from."""


class BadAction(ValueError):
    """A control with a missing or malformed argument (the page gets a 400 saying which)."""


def _node(args: dict, key: str, nodes: list[str]) -> str:
    value = args.get(key)
    if not isinstance(value, str) or value not in nodes:
        raise BadAction(f"{key} must name a node of the cluster ({', '.join(nodes)}), got {value!r}")
    return value


def _text(args: dict, key: str, default: str | None = None) -> str:
    value = args.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise BadAction(f"{key} is required and must be a non-empty string")
    return value.strip()


def theory_curve(n: int, fanout: int, interval: float) -> dict:
    """Return Serf's fraction-informed curve for ``n`` nodes (seconds, fraction) and the push-pull figures."""
    pp = theory.table_rounds(max(n, 1), fanout)
    serf = theory.serf_rounds(max(n, 1), fanout)
    horizon = max(serf, pp["p99"] if pp else 0.0) * 1.25
    steps = 40
    curve = [(round(horizon * i / steps * interval, 3), round(theory.serf_fraction(n, horizon * i / steps, fanout), 4))
             for i in range(steps + 1)]
    return {"curve": curve, "serf_s": round(serf * interval, 3),
            "push_pull_mean_s": pp and round(pp["mean"] * interval, 3),
            "push_pull_p99_s": pp and round(pp["p99"] * interval, 3)}


class Hub:
    """The state of one cluster for every page, refreshed by the source's single poller."""

    def __init__(self, source, clock: Callable[[], float] = time.time) -> None:
        self.source = source
        self.clock = clock
        self.started = clock()
        self.version = 0
        self.text = "{}"  # the latest state as JSON
        self.tracked: str | None = None
        self._cond = threading.Condition()
        self._build_lock = threading.Lock()
        self._stop = threading.Event()
        self._events: list[dict] = []
        self._groups: list[list[str]] = []
        self._cuts: list[tuple[str, str]] = []
        self._loss: dict[str, float] = {}
        self._seen: dict[str, float] = {}  # node -> first-seen instant of the tracked address
        self._samples: dict[str, tuple[float, float, float, float | None, float | None]] = {}
        self._converged: bool | None = None
        self._diverged_at = self.started

    # -- the poller ------------------------------------------------------------------

    def start(self) -> Hub:
        """Build the first state and start the source's poller."""
        self.changed()
        threading.Thread(target=self.source.run, args=(self.changed, self._stop), daemon=True,
                         name="dashboard-poller").start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.source.close()

    def changed(self) -> None:
        """Rebuild the state from a fresh reading and wake every waiting page; a failure is logged."""
        try:
            with self._build_lock:
                text = json.dumps(self._build())
        except Exception:
            log.exception("building the dashboard state failed")
            return
        with self._cond:
            self.version += 1
            self.text = text
            self._cond.notify_all()

    def wait(self, version: int, timeout: float) -> tuple[int, str]:
        """Return (version, state JSON) once the version passes ``version``, or the current one after ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self.version > version, timeout)
            return self.version, self.text

    # -- the state -------------------------------------------------------------------

    def _build(self) -> dict:
        readings: dict[str, Reading] = self.source.read()
        now = self.clock()
        sizes = Counter(r.digest for r in readings.values() if r.digest is not None)
        colour = {d: i for i, (d, _) in enumerate(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])))}
        self._note_convergence(len(sizes), sum(sizes.values()), now)
        nodes = [self._node_view(name, r, colour, now) for name, r in readings.items()]
        return {
            "name": self.source.name, "backend": self.source.backend, "nodes": nodes,
            "digests": len(sizes), "converged": len(sizes) == 1,
            "partition": self._groups or [list(readings)],
            "cuts": [list(c) for c in self._cuts], "loss": self._loss,
            "track": self._track(readings),
            "events": self._events[-MAX_EVENTS:], "now": round(now - self.started, 3),
        }

    def _node_view(self, name: str, r: Reading, colour: dict[str, int], now: float) -> dict:
        rps, bps = self._rates(name, r, now)
        return {
            "name": name, "state": r.state, "digest": r.digest, "entries": r.entries,
            "group": colour.get(r.digest) if r.digest is not None else None,
            "rps": rps, "bps": bps, "holds": self.tracked is not None and self.tracked in r.listed,
            "loss": self._loss.get(name),
            "cuts_out": [d for s, d in self._cuts if s == name], "cuts_in": [s for s, d in self._cuts if d == name],
        }

    def _rates(self, name: str, r: Reading, now: float) -> tuple[float | None, float | None]:
        """Rounds and bytes per second over the last window of at least RATE_WINDOW s."""
        if r.rounds is None:
            self._samples.pop(name, None)
            return None, None
        t, rounds, sent, rps, bps = self._samples.get(name, (now, r.rounds, r.bytes or 0.0, None, None))
        if now - t >= RATE_WINDOW:
            rps = max(0.0, (r.rounds - rounds) / (now - t))
            bps = max(0.0, ((r.bytes or 0.0) - sent) / (now - t)) if r.bytes is not None else None
            t, rounds, sent = now, r.rounds, r.bytes or 0.0
        self._samples[name] = (t, rounds, sent, rps, bps)
        return (round(rps, 2) if rps is not None else None), (round(bps) if bps is not None else None)

    def _note_convergence(self, digests: int, answering: int, now: float) -> None:
        converged = digests == 1
        if converged == self._converged or answering == 0:
            return
        if self._converged is not None:
            if converged:
                self._event("converged", f"converged in {now - self._diverged_at:.1f} s: one digest on "
                                         f"{answering} nodes")
            else:
                self._event("diverged", f"{digests} digests")
        if not converged:
            self._diverged_at = now
        self._converged = converged

    def _track(self, readings: dict[str, Reading]) -> dict | None:
        """The tracked address: which nodes list it, since when (their first-seen instants), and theory."""
        address = self.tracked
        if address is None:
            return None
        holders = {n for n, r in readings.items() if address in r.listed}
        self._seen = {n: t for n, t in self._seen.items() if n in holders}
        if holders - set(self._seen):
            try:
                self._seen.update({n: t for n, t in self.source.seen(address).items() if n in holders})
            except Exception:
                log.exception("reading first-seen instants of %s failed", address)
        t0 = min(self._seen.values(), default=0.0)
        running = sum(1 for r in readings.values() if r.state == "running")
        return {"address": address, "nodes": running, "holders": len(holders),
                "since": {n: round(t - t0, 3) for n, t in sorted(self._seen.items(), key=lambda kv: kv[1])},
                "interval": self.source.interval, "fanout": self.source.fanout,
                "theory": theory_curve(max(running, 1), self.source.fanout, self.source.interval)}

    def _event(self, kind: str, text: str) -> None:
        self._events.append({"t": round(self.clock() - self.started, 3), "kind": kind, "text": text})
        del self._events[:-MAX_EVENTS]

    # -- the controls ----------------------------------------------------------------

    def act(self, op: str, args: dict) -> Any:
        """Check and apply one control; raise BadAction on bad arguments, HarnessError when it fails."""
        nodes = self.source.nodes
        handler = getattr(self, f"_do_{op}", None) if isinstance(op, str) else None
        if handler is None:
            raise BadAction(f"op must be one of register, deregister, partition, one_way, heal, kill, restart, "
                            f"pause, unpause, loss, track; got {op!r}")
        try:
            result = handler(args, nodes)
        except (InvalidPartition, NodeNotFound) as exc:
            raise BadAction(str(exc)) from None
        self.changed()
        return result

    def _do_register(self, args: dict, nodes: list[str]) -> Any:
        node, address, app = _node(args, "node", nodes), _text(args, "address"), _text(args, "app_name", "web")
        reply = self.source.act("register", node=node, address=address, app_name=app)
        self.tracked, self._seen = address, {}
        self._event("register", f"{address} ({app}) at {node}")
        return reply

    def _do_deregister(self, args: dict, nodes: list[str]) -> Any:
        node, address = _node(args, "node", nodes), _text(args, "address")
        reply = self.source.act("deregister", node=node, address=address)
        self._event("deregister", f"{address} at {node}")
        return reply

    def _do_track(self, args: dict, nodes: list[str]) -> None:
        address = args.get("address")
        self.tracked = address.strip() if isinstance(address, str) and address.strip() else None
        self._seen = {}

    def _do_partition(self, args: dict, nodes: list[str]) -> None:
        groups = args.get("groups")
        if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
            raise BadAction("groups must be a list of lists of node names")
        full = topology.validate_groups(groups, nodes)
        self.source.act("partition", groups=groups)
        self._groups = full
        self._event("partition", " | ".join(",".join(g) for g in full))

    def _do_one_way(self, args: dict, nodes: list[str]) -> None:
        src, dst = _node(args, "src", nodes), _node(args, "dst", nodes)
        if src == dst:
            raise BadAction("src and dst must be two different nodes")
        self.source.act("one_way", src=src, dst=dst)
        self._cuts.append((src, dst))
        self._event("one_way", f"{src} -/-> {dst}")

    def _do_heal(self, args: dict, nodes: list[str]) -> None:
        self.source.act("heal")
        self._groups, self._cuts, self._loss = [], [], {}
        self._event("heal", "every cut and loss removed")

    def _do_loss(self, args: dict, nodes: list[str]) -> None:
        node, percent = _node(args, "node", nodes), args.get("percent")
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 <= percent <= 100:
            raise BadAction(f"percent must be a number in 0..100, got {percent!r}")
        self.source.act("loss", node=node, percent=float(percent))
        if self.source.backend == "sim":  # the simulated network drops on every link
            self._loss = {n: float(percent) for n in nodes} if percent else {}
        elif percent:
            self._loss[node] = float(percent)
        else:
            self._loss.pop(node, None)
        self._event("loss", f"{percent:g} % at {node}" if self.source.backend != "sim" else f"{percent:g} % everywhere")

    def _process(self, op: str, args: dict, nodes: list[str]) -> None:
        node = _node(args, "node", nodes)
        self.source.act(op, node=node)
        if op == "restart" and self.source.backend != "sim":  # a restarted container has no loss rules left
            self._loss.pop(node, None)
        self._event(op, node)

    def _do_kill(self, args: dict, nodes: list[str]) -> None:
        self._process("kill", args, nodes)

    def _do_restart(self, args: dict, nodes: list[str]) -> None:
        self._process("restart", args, nodes)

    def _do_pause(self, args: dict, nodes: list[str]) -> None:
        self._process("pause", args, nodes)

    def _do_unpause(self, args: dict, nodes: list[str]) -> None:
        self._process("unpause", args, nodes)


__all__ = ["BadAction", "Hub", "HarnessError", "theory_curve"]
