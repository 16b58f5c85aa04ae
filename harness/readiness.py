"""Waits on a cluster: nodes answering /health, nodes agreeing on one digest.

Both are ``harness.wait.wait_until`` with a check built from callables, so they run
against any backend (and, with fakes, without one). A failed wait raises a named
error saying what it last saw, with the log tails of the nodes at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from . import convergence
from .errors import ConvergenceTimeout, NodeStartError
from .timeline import Timeline
from .topology import sort_nodes
from .wait import Outcome, wait_until

# States in which a container may still come up.
_STARTING = ("running", "created", "restarting")
MAX_WORKERS = 8


def wait_healthy(names: Sequence[str], healthy: Callable[[str], bool], state: Callable[[str], str],
                 logs: Callable[[str], str], timeout: float, cluster: str = "") -> None:
    """Wait until every node answers /health; a node whose container died fails fast, with its logs."""

    def one(name: str) -> Outcome[str]:
        def check() -> str:
            return "ok" if healthy(name) else state(name)

        return wait_until(check, passed=lambda s: s not in _STARTING, timeout=timeout, interval=0.2)

    if not names:
        return
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(names))) as pool:
        outcomes = dict(zip(names, pool.map(one, names), strict=True))
    bad = {n: o for n, o in outcomes.items() if not (o.ok and o.last == "ok")}
    if bad:
        detail = ", ".join(f"{n} ({o.last if o.ok else f'no /health answer in {timeout:g}s'})" for n, o in bad.items())
        raise NodeStartError(f"cluster {cluster!r}: nodes not healthy: {detail}", {n: logs(n) for n in bad})


def observe(names: Sequence[str], digests: Callable[[Sequence[str]], dict[str, tuple[str, int]]],
            views: Callable[[Sequence[str], str], dict[str, dict]], expect_present: Iterable[str] = (),
            expect_absent: Iterable[str] = (), explain: bool = False) -> convergence.Report:
    """Ask ``names`` for digests (and listings when needed) and judge convergence once.

    ``explain`` also fetches listings and full entries so the report says who lacks what.
    """
    present, absent = list(expect_present), list(expect_absent)
    seen = digests(names)
    listings = views(names, "/registry/list") if explain or present or absent else {}
    detail = views(names, "/registry/entries") if explain else None
    unreachable = [n for n in names if n not in seen]
    return convergence.check(seen, listings, unreachable, present, absent, detail=detail)


def wait_converged(look: Callable[[bool], convergence.Report], timeout: float, interval: float,
                   logs: Callable[[str], str], timeline: Timeline, cluster: str = "") -> convergence.Report:
    """Poll ``look(explain)`` until its report says converged; raise ConvergenceTimeout otherwise.

    Either outcome goes on the timeline. The error carries the last report, explained
    (who lacks or disagrees on which entries), and the log tails of up to four
    lagging nodes.
    """
    outcome = wait_until(lambda: look(False), passed=lambda r: r.converged, timeout=timeout, interval=interval)
    if outcome.ok and outcome.last is not None:
        report = outcome.last
        digest, entries = next(iter(report.digests.values()))
        timeline.record("converged", elapsed=round(outcome.elapsed, 3), attempts=outcome.attempts,
                        nodes=sort_nodes(report.digests), digest=digest, entries=entries,
                        unreachable=report.unreachable)
        return report
    report = look(True)
    if report.converged and outcome.last is not None:  # agreed right after the deadline: still a timeout
        report = outcome.last
    tails = {n: logs(n) for n in (report.lagging() or report.unreachable)[:4]}
    timeline.record("convergence_timeout", timeout=timeout, attempts=outcome.attempts, explanation=report.explain())
    raise ConvergenceTimeout(f"cluster {cluster!r} did not converge within {timeout:g}s", report, tails)

def status(cluster: str, states: Mapping[str, str], digests: Mapping[str, tuple[str, int]],
           url: Callable[[str], str], sigstopped: Callable[[str], bool]) -> dict:
    """The status table of a cluster: each node's state, entries, digest, and whether all agree.

    A running node that does not answer is "paused" when its process is SIGSTOP'd,
    else "unreachable".
    """
    rows = []
    for n, state in states.items():
        d = digests.get(n)
        shown = state if state != "running" else ("ok" if d else "unreachable")
        if shown == "unreachable" and sigstopped(n):
            shown = "paused"
        rows.append({"name": n, "url": url(n), "state": state,
                     "entries": d[1] if d else None, "digest": d[0] if d else None, "status": shown})
    up = [n for n, s in states.items() if s == "running"]
    converged = bool(digests) and len({d for d, _ in digests.values()}) == 1 and len(digests) == len(up)
    return {"cluster": cluster, "nodes": rows, "converged": converged}
