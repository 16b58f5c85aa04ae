"""Reference figures for gossip dissemination, in one place, with their sources.

Source of every number: the project's shared REFERENCE.md, "Rounds to full dissemination (theory)":
synchronous rounds, each node contacts ``f`` uniformly random peers per round, no loss, one
update starting at one node; mean / 99th percentile rounds until every node has it
(Monte-Carlo, 2000 trials for N <= 100, 300 for N = 1000). Closed form for push-pull:
log3 N + O(log log N) rounds (Karp, Schindelhauer, Shenker, Vöcking 2000). HashiCorp Serf's
convergence calculator: fraction informed after r rounds = 1 / (1 + (N+1) e^(-c N r)),
c = (fanout/N)(1-loss)(1-failed)(0.5); 99.99 % at N=30, fanout 3 in 9 rounds, N=1000 in 11,
N=1000 with 50 % loss in 22.
"""

from __future__ import annotations

import math

# N -> fanout -> (mean, p99) rounds until every node has the update, push-pull, REFERENCE.md.
PUSH_PULL: dict[int, dict[int, tuple[float, int]]] = {
    5: {1: (2.4, 4), 2: (1.8, 2), 3: (1.3, 2)},
    10: {1: (3.5, 5), 2: (2.4, 3), 3: (2.0, 3)},
    50: {1: (5.7, 7), 2: (4.0, 5), 3: (3.2, 4)},
    100: {1: (6.5, 8), 2: (4.5, 5), 3: (3.9, 4)},
    1000: {1: (9.2, 10), 2: (6.2, 7), 3: (5.1, 6)},
}

# Serf's calculator reports the round at which this fraction of nodes is informed.
SERF_TARGET = 0.9999

# The experiment's goal: mean rounds to all nodes within this factor of the push-pull table.
TARGET_FACTOR = 1.25


def table_rounds(n: int, fanout: int, table: dict[int, dict[int, tuple[float, int]]] = PUSH_PULL) -> dict | None:
    """Return {"mean", "p99", "exact"} rounds of the table at ``n``, ``fanout``.

    Between tabulated N the values are interpolated linearly in ln N (dissemination grows
    as log N); outside 5..1000 they are extrapolated from the two nearest rows. ``exact``
    says whether ``n`` is a row of the table. None when the fanout is not tabulated.
    """
    if n < 1:
        raise ValueError(f"N must be positive, got {n}")
    sizes = sorted(table)
    if fanout not in table[sizes[0]]:
        return None
    if n in table:
        mean, p99 = table[n][fanout]
        return {"mean": mean, "p99": float(p99), "exact": True}
    if n < sizes[0]:
        lo, hi = sizes[0], sizes[1]
    elif n > sizes[-1]:
        lo, hi = sizes[-2], sizes[-1]
    else:
        hi = next(s for s in sizes if s > n)
        lo = sizes[sizes.index(hi) - 1]
    w = (math.log(n) - math.log(lo)) / (math.log(hi) - math.log(lo))
    out = {}
    for i, key in enumerate(("mean", "p99")):
        a, b = table[lo][fanout][i], table[hi][fanout][i]
        out[key] = max(0.0, a + w * (b - a))
    return {**out, "exact": False}


def log3(n: int) -> float:
    """Leading term of push-pull dissemination rounds, log3 N (Karp et al. 2000)."""
    return math.log(n, 3)


def serf_fraction(n: int, rounds: float, fanout: int = 3, loss: float = 0.0, failed: float = 0.0) -> float:
    """Fraction of ``n`` nodes informed after ``rounds`` rounds in Serf's logistic model."""
    c = (fanout / n) * (1 - loss) * (1 - failed) * 0.5
    return 1.0 / (1.0 + (n + 1) * math.exp(-c * n * rounds))


def serf_rounds(n: int, fanout: int = 3, loss: float = 0.0, failed: float = 0.0,
                target: float = SERF_TARGET) -> float:
    """Rounds (fractional) until ``target`` of ``n`` nodes are informed in Serf's model.

    Solves 1 / (1 + (N+1) e^(-c N r)) = target for r; Serf's calculator shows its ceiling.
    """
    k = fanout * (1 - loss) * (1 - failed) * 0.5
    if k <= 0:
        return math.inf
    return math.log((n + 1) * target / (1 - target)) / k


def reference(n: int, fanout: int, loss: float = 0.0) -> dict:
    """Every theory figure for one (N, fanout, loss): the dict the summary and plots use.

    ``loss`` is a fraction (0..1); only Serf's model accounts for it.
    """
    pp = table_rounds(n, fanout)
    serf = serf_rounds(n, fanout, loss)
    return {
        "push_pull_mean": pp and round(pp["mean"], 3),
        "push_pull_p99": pp and round(pp["p99"], 3),
        "push_pull_exact": pp and pp["exact"],
        "log3_n": round(log3(n), 3),
        "serf_rounds": math.ceil(serf) if math.isfinite(serf) else None,
        "serf_rounds_exact": round(serf, 3) if math.isfinite(serf) else None,
    }
