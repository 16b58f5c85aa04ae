"""The fault schedule of a check, drawn once from a seed (pure: no cluster, no clock).

Faults come one at a time: ``quiet_s`` healthy seconds, then a fault for ``fault_s``
seconds, then it is undone, again and again until ``duration``. Kinds follow one another
in a seeded shuffle of the requested kinds (reshuffled each time all have been used), so
a long run applies each about as often. Each fault's targets are drawn when it is planned:

- ``halves``: the nodes split at random into two halves, cut both ways;
- ``isolate``: one node cut from all others;
- ``ring``: the nodes on a shuffled ring, each keeping links only to the ``k`` nearest on
  each side, ``k`` such that each node sees a majority (2k + 1 > N/2) but no two
  nodes see the same majority;
- ``bridge``: two halves cut from each other except one bridge node linked to both;
- ``one-way``: what one node starts towards another is dropped, the reverse passes;
- ``kill``: one node killed with SIGKILL, started again at the end;
- ``pause``: one node frozen, thawed at the end;
- ``loss``: 20 % of the packets one node receives dropped (in the simulator, of every message);
- ``skew``: one node's wall clock shifted by up to a quarter of the lease, either way;
- ``delay``: what one node sends delayed by 300 ms (past the exchange timeout).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from typing import Any

from ..topology import sort_nodes

LOSS_PERCENT = 20.0
DELAY_MS = 300.0
WARMUP_S = 1.0  # healthy seconds before the first fault

Link = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Fault:
    """One scheduled fault: applied at ``start``, undone at ``end`` (seconds after the start)."""

    id: int
    kind: str
    start: float
    end: float
    params: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """The fault as a JSON-ready record."""
        return {"fault": self.kind, "id": self.id, "start": self.start, "end": self.end, **self.params}


def ring_cuts(nodes: Sequence[str], rng: random.Random) -> list[Link]:
    """Directed links cut so each node on a shuffled ring sees only its ``k`` nearest each side (a majority)."""
    ring = list(nodes)
    rng.shuffle(ring)
    n = len(ring)
    k = max(1, math.ceil((n // 2) / 2))  # 2k others + itself > n / 2
    cuts = []
    for i, a in enumerate(ring):
        for j, b in enumerate(ring):
            distance = min((i - j) % n, (j - i) % n)
            if a != b and distance > k:
                cuts.append((a, b))
    return sorted(cuts)


def halves(nodes: Sequence[str], rng: random.Random) -> list[list[str]]:
    """The nodes shuffled and split into two halves."""
    shuffled = list(nodes)
    rng.shuffle(shuffled)
    half = len(shuffled) // 2
    return [sort_nodes(shuffled[:half]), sort_nodes(shuffled[half:])]


def bridge_cuts(nodes: Sequence[str], rng: random.Random) -> tuple[str, list[Link]]:
    """A bridge node and the links cut between the two halves of the others (the bridge keeps both)."""
    others = list(nodes)
    rng.shuffle(others)
    bridge = others.pop()
    half = len(others) // 2
    a, b = others[:half], others[half:]
    return bridge, sorted([(x, y) for x in a for y in b] + [(y, x) for x in a for y in b])


def params(kind: str, nodes: Sequence[str], rng: random.Random, ttl: float) -> dict[str, Any]:
    """Draw the targets of one fault of ``kind``."""
    if kind == "halves":
        return {"groups": halves(nodes, rng)}
    if kind == "ring":
        return {"cuts": [list(link) for link in ring_cuts(nodes, rng)]}
    if kind == "bridge":
        bridge, cuts = bridge_cuts(nodes, rng)
        return {"bridge": bridge, "cuts": [list(link) for link in cuts]}
    if kind == "one-way":
        src, dst = rng.sample(list(nodes), 2)
        return {"src": src, "dst": dst}
    node = rng.choice(list(nodes))
    extra: dict[str, Any] = {"loss": {"percent": LOSS_PERCENT}, "delay": {"ms": DELAY_MS},
                             "skew": {"seconds": round(rng.uniform(-ttl / 4, ttl / 4), 3)}}.get(kind, {})
    return {"node": node, **extra}


def usable(kind: str, nodes: int) -> bool:
    """Whether ``kind`` means something on a cluster of ``nodes`` nodes."""
    need = {"ring": 4, "bridge": 3, "halves": 2, "isolate": 2, "one-way": 2}.get(kind, 1)
    return nodes >= need


def schedule(kinds: Sequence[str], nodes: Sequence[str], duration: float, rng: random.Random,
             fault_s: float, quiet_s: float, ttl: float) -> list[Fault]:
    """Faults one after another, each undone before the next, all ending by ``duration``."""
    kinds = [k for k in kinds if usable(k, len(nodes))]
    out: list[Fault] = []
    deck: list[str] = []
    t = WARMUP_S + quiet_s
    while kinds and t + fault_s <= duration:
        if not deck:
            deck = list(kinds)
            rng.shuffle(deck)
        kind = deck.pop()
        out.append(Fault(len(out), kind, round(t, 4), round(t + fault_s, 4), params(kind, nodes, rng, ttl)))
        t += fault_s + quiet_s
    return out
