"""The verdict over a history and the nodes' final views (pure: no cluster, no clock).

Writes are ordered by the registry's Lamport versions, which every acknowledgement
carries, not by wall time: two writes to one address at different nodes are
concurrent until one node has seen the other, and either may win. The rules:

- **Lost**: an acknowledged (ok) register or renew R of address A is lost when A is
  absent from every node's final view although R's lease must still run: the final read
  came less than ``ttl`` after R was acknowledged (the ``expire_grace`` beyond it is a
  margin for clocks and propagation; older registrations may expire by design and are not
  judged), and no deregister of A could have beaten R: none acknowledged with a version
  >= R's, none indeterminate (its version is unknown).
- **Resurrected**: with D the acknowledged deregister of A with the highest version, A
  is resurrected when a final view lists A with a version below D's (the tombstone was
  lost), or with a version no acknowledged register of A carries while no register of A
  was indeterminate (a write nobody made); or when, during the run, a node that listed A
  and then stopped listing it lists it again at a version no newer than before, after D
  was acknowledged (the node forgot the tombstone or a dead copy came back).
- **Converged**: every node answered the final read and all final digests are equal.
- **Visible**: for each acknowledged register or renew, the first poll after its
  acknowledgement at which every answering node lists A at its version or newer; polls
  after the next write to A began do not count (that registration is "superseded").
- **Stale read**: for each acknowledged deregister D, the last poll after D's
  acknowledgement (and before the next register of A began) at which some node still
  listed A below D's version; the window is that instant minus D's acknowledgement.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .model import DEREGISTER, INDETERMINATE, OK, WRITES

Record = Mapping[str, Any]
Views = Mapping[str, Mapping[str, Any]]  # node -> address -> version


def _by_address(ops: Iterable[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = collections.defaultdict(list)
    for op in sorted(ops, key=lambda r: (r["invoke"], r["index"])):
        out[op["address"]].append(op)
    return out


def _present(final: Views, address: str) -> dict[str, int | None]:
    return {node: view[address] for node, view in final.items() if address in view}


def lost_writes(ops: Sequence[Record], final: Views, final_t: float, ttl: float) -> list[dict]:
    """The acknowledged registrations whose address vanished although their lease still runs (newest per address)."""
    lost = []
    for address, history in _by_address(ops).items():
        if _present(final, address):
            continue
        deregs = [d for d in history if d["op"] == DEREGISTER]
        for r in reversed(history):
            if r["op"] not in WRITES or r["outcome"] != OK or final_t - r["complete"] >= ttl:
                continue
            if any(d["outcome"] == INDETERMINATE or (d["outcome"] == OK and (d["version"] or 0) >= r["version"])
                   for d in deregs):
                continue
            lost.append({"address": address, "index": r["index"], "node": r["node"], "version": r["version"],
                         "acknowledged": r["complete"], "lease_left_s": round(ttl - (final_t - r["complete"]), 4)})
            break
    return lost


def judged_for_loss(ops: Sequence[Record], final_t: float, ttl: float) -> int:
    """How many addresses had an acknowledged registration whose lease must still run at the final read."""
    return len({r["address"] for r in ops
                if r["op"] in WRITES and r["outcome"] == OK and final_t - r["complete"] < ttl})


def _final_resurrections(address: str, history: Sequence[Record], final: Views) -> list[dict]:
    deregs = [d["version"] for d in history if d["op"] == DEREGISTER and d["outcome"] == OK]
    if not deregs:
        return []
    tomb = max(deregs)
    known = {r["version"] for r in history if r["op"] in WRITES and r["outcome"] == OK}
    unknown_writes = any(r["op"] in WRITES and r["outcome"] == INDETERMINATE for r in history)
    found = []
    for node, version in sorted(_present(final, address).items()):
        v = version or 0
        if v < tomb or (v not in known and not unknown_writes):
            found.append({"address": address, "node": node, "version": version, "tombstone": tomb, "when": "final"})
    return found


def _reappearances(address: str, history: Sequence[Record], reads: Sequence[Record]) -> list[dict]:
    """Polls at which a node lists ``address`` again, no newer than before it stopped, after a deregister's ack."""
    acks = sorted(d["complete"] for d in history if d["op"] == DEREGISTER and d["outcome"] == OK)
    if not acks:
        return []
    seen: dict[str, tuple[int, bool]] = {}  # node -> (highest version listed, stopped listing since)
    found = []
    for read in reads:
        for node, view in read["views"].items():
            v = view.get(address)
            high, gone = seen.get(node, (None, False))
            if v is None:
                if high is not None:
                    seen[node] = (high, True)
            elif high is not None and gone and v <= high and read["t"] > acks[0]:
                found.append({"address": address, "node": node, "version": v, "before": high,
                              "t": read["t"], "when": "run"})
                seen[node] = (high, False)
            elif high is None or v > high:
                seen[node] = (v, False)
    return found


def resurrections(ops: Sequence[Record], final: Views, reads: Sequence[Record]) -> list[dict]:
    """Every resurrection found, at the end or during the run."""
    found = []
    for address, history in _by_address(ops).items():
        found += _final_resurrections(address, history, final)
        found += _reappearances(address, history, reads)
    return found


def _next_write(history: Sequence[Record], after: Record, kinds: Iterable[str]) -> float:
    """When the next non-refused operation of ``kinds`` on the address began (inf if none)."""
    kinds = set(kinds)
    later = [r["invoke"] for r in history if r["invoke"] > after["invoke"] and r["op"] in kinds
             and r["outcome"] != "refused"]
    return min(later, default=float("inf"))


def visibility(ops: Sequence[Record], reads: Sequence[Record]) -> tuple[list[float], int]:
    """Seconds from acknowledgement to visible on every answering node; and how many were superseded first."""
    points, superseded = _visibility(ops, reads)
    return [d for _, d in points], superseded


def visibility_points(records: Sequence[Record]) -> list[tuple[float, float]]:
    """(acknowledged at, seconds until visible on all) of each registration that became visible everywhere."""
    ops = [r for r in records if r.get("kind") == "op"]
    reads = sorted((r for r in records if r.get("kind") == "read"), key=lambda r: r["t"])
    return sorted(_visibility(ops, reads)[0])


def _between(reads: Sequence[Record], times: Sequence[float], start: float, until: float) -> Iterable[Record]:
    """The polls (sorted by time, ``times`` their instants) at or after ``start`` and before ``until``."""
    for i in range(bisect.bisect_left(times, start), len(reads)):
        if times[i] >= until:
            return
        yield reads[i]


def _visibility(ops: Sequence[Record], reads: Sequence[Record]) -> tuple[list[tuple[float, float]], int]:
    delays: list[tuple[float, float]] = []
    superseded = 0
    times = [read["t"] for read in reads]
    for address, history in _by_address(ops).items():
        for r in history:
            if r["op"] not in WRITES or r["outcome"] != OK:
                continue
            until = _next_write(history, r, WRITES | {DEREGISTER})
            seen = next((read["t"] for read in _between(reads, times, r["complete"], until) if read["views"]
                         and all((v.get(address) or 0) >= r["version"] for v in read["views"].values())), None)
            if seen is None:
                superseded += 1
            else:
                delays.append((r["complete"], round(seen - r["complete"], 4)))
    return delays, superseded


def stale_reads(ops: Sequence[Record], reads: Sequence[Record]) -> list[dict]:
    """For each acknowledged deregister, how long some node kept listing the address after the acknowledgement."""
    out = []
    times = [read["t"] for read in reads]
    for address, history in _by_address(ops).items():
        for d in history:
            if d["op"] != DEREGISTER or d["outcome"] != OK:
                continue
            until = _next_write(history, d, WRITES)
            last = [read["t"] for read in _between(reads, times, d["complete"], until)
                    if any(address in v and (v[address] or 0) < d["version"] for v in read["views"].values())]
            out.append({"address": address, "index": d["index"], "acknowledged": d["complete"],
                        "window_s": round(max(last) - d["complete"], 4) if last else 0.0})
    return out


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` (nearest rank), None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]


def check(records: Sequence[Record], final: Views, digests: Mapping[str, str | None], final_t: float,
          ttl: float) -> dict[str, Any]:
    """The checker's findings: counts, the offending records and the delay figures."""
    ops = [r for r in records if r.get("kind") == "op"]
    reads = sorted((r for r in records if r.get("kind") == "read"), key=lambda r: r["t"])
    outcomes = collections.Counter(r["outcome"] for r in ops)
    lost = lost_writes(ops, final, final_t, ttl)
    resurrected = resurrections(ops, final, reads)
    delays, superseded = visibility(ops, reads)
    stale = stale_reads(ops, reads)
    windows = [s["window_s"] for s in stale]
    answered = [d for d in digests.values() if d is not None]
    return {
        "operations": len(ops), "acknowledged": outcomes[OK], "refused": outcomes["refused"],
        "indeterminate": outcomes[INDETERMINATE],
        "lost": len(lost), "loss_judged_addresses": judged_for_loss(ops, final_t, ttl),
        "resurrected": len({r["address"] for r in resurrected}),
        "converged": bool(answered) and len(answered) == len(digests) and len(set(answered)) == 1,
        "visible_median_s": quantile(delays, 0.5), "visible_p99_s": quantile(delays, 0.99),
        "visible_max_s": max(delays, default=None), "visible_measured": len(delays),
        "visible_superseded": superseded,
        "stale_read_max_s": max(windows, default=0.0), "stale_read_p99_s": quantile(windows, 0.99),
        "stale_reads": sum(1 for w in windows if w > 0), "deregisters_acknowledged": len(stale),
        "lost_writes": lost, "resurrections": resurrected,
    }


def violations(results: Mapping[str, Any]) -> list[str]:
    """What makes the check fail, one phrase each (empty: it passed)."""
    problems = []
    if results["lost"]:
        problems.append(f"{results['lost']} acknowledged writes lost")
    if results["resurrected"]:
        problems.append(f"{results['resurrected']} deregistered instances resurrected")
    if not results["converged"]:
        problems.append("nodes did not converge")
    return problems
