"""Load of a 1,000-instance deployment on a 3-node loopback cluster: latency per operation, and gossip's pace.

Starts ``--nodes`` real node processes on 127.0.0.1 (``python -m node``, the default
preset: 1 s rounds, 30 s leases), lets them gossip at rest for ``--rest`` seconds, then
for ``--seconds`` drives them at fixed rates, open loop (every request is sent at its
scheduled instant, whatever the answers before it did):

- ``--instances`` instances, spread over the nodes and over ten app names, each
  registering once (the first ttl/3 seconds, spread evenly: 201) and then renewing every
  ttl/3 seconds (200): 1,000 instances at ttl 30 s make 100 writes a second;
- ``--list-rate`` lookups a second, ``GET /registry/list?app_name=...`` of one app, as a
  client resolving a service does (``--list-all`` reads the whole table instead).

It reports per operation the count, errors (an exception or a status other than the
expected one) and the p50 / p99 / max latency, measured from each request's *scheduled*
instant, so a client that falls behind shows as latency instead of hiding it; and per node
the gossip rounds and completed exchanges a second (from ``/metrics``) at rest and under
load: a gossip loop starved by the API would run fewer rounds.

The client is a thread pool over ``requests`` sessions (one kept-alive connection per
thread and node), not locust: locust's gevent patches the whole process, which here also
starts and supervises the nodes and scrapes them, and on a two-core machine a plain
thread pool is the cheaper generator. Everything stays on 127.0.0.1 and is bounded:
``--seconds`` of schedule, every request times out after 5 s, and the run is abandoned
60 s past its schedule.

Usage: python bench/loadtest.py [--instances 1000] [--ttl 30] [--list-rate 50] [--seconds 30] [--rest 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.localnode import NodeProcess, cluster_of, stop_all  # noqa: E402
from harness.wait import wait_until  # noqa: E402

REQUEST_TIMEOUT = 5.0  # seconds one request may take before it counts as an error
OVERRUN = 60.0  # seconds past its schedule after which the run is abandoned
APPS = [f"app{i}" for i in range(10)]


@dataclass(frozen=True)
class Call:
    """One scheduled request: at ``due`` seconds after the start, ``op`` on node ``node``."""

    due: float
    op: str  # register, renew or list
    node: int
    address: str = ""
    app: str = ""


@dataclass
class Results:
    """Latencies (seconds from the scheduled instant) and errors, per operation; thread-safe."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # op -> one error seen
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, latency: float, error: str | None) -> None:
        with self.lock:
            self.latencies.setdefault(op, []).append(latency)
            if error is not None:
                self.errors[op] = self.errors.get(op, 0) + 1
                self.examples.setdefault(op, error)


def schedule(instances: int, ttl: float, list_rate: float, seconds: float, nodes: int) -> list[Call]:
    """Return the calls of a run, sorted by due instant: registrations, renewals every ttl/3, lookups."""
    period = ttl / 3
    calls = []
    for i in range(instances):
        address, app, node = f"10.{20 + i // 62500}.{i // 250 % 250}.{i % 250 + 1}:8080", APPS[i % len(APPS)], i % nodes
        first = period * i / instances
        calls.append(Call(first, "register", node, address, app))
        t = first + period
        while t < seconds:
            calls.append(Call(t, "renew", node, address, app))
            t += period
    lookups = int(list_rate * seconds)
    calls += [Call(k / list_rate, "list", k % nodes, app=APPS[k % len(APPS)]) for k in range(lookups)]
    return sorted((c for c in calls if c.due < seconds), key=lambda c: c.due)


class Client:
    """Sends calls to the nodes over one kept-alive session per thread."""

    def __init__(self, urls: Sequence[str], list_all: bool) -> None:
        self.urls = list(urls)
        self.list_all = list_all
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def send(self, call: Call) -> str | None:
        """Send ``call``; return None when it was answered as expected, else what went wrong."""
        url = self.urls[call.node]
        try:
            if call.op == "list":
                params = {} if self.list_all else {"app_name": call.app}
                r = self._session().get(url + "/registry/list", params=params, timeout=REQUEST_TIMEOUT)
                expected = 200
            else:
                body = {"address": call.address, "app_name": call.app}
                r = self._session().post(url + "/registry/register_instance", json=body, timeout=REQUEST_TIMEOUT)
                expected = 201 if call.op == "register" else 200
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if r.status_code == expected else f"HTTP {r.status_code}: {r.text[:200]}"


def run_load(client: Client, calls: Sequence[Call], workers: int) -> tuple[Results, float]:
    """Send every call at its instant on ``workers`` threads; return the results and the worst send lag (s)."""
    results = Results()
    lag = 0.0
    start = time.monotonic()

    def one(call: Call) -> None:
        error = client.send(call)
        results.record(call.op, time.monotonic() - start - call.due, error)

    with ThreadPoolExecutor(workers, thread_name_prefix="load") as pool:
        futures = []
        for call in calls:
            delay = start + call.due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            lag = max(lag, -delay)
            futures.append(pool.submit(one, call))
            if time.monotonic() - start > call.due + OVERRUN:
                raise SystemExit(f"abandoned: more than {OVERRUN:g} s behind schedule")
        _, pending = wait(futures, timeout=OVERRUN)
        if pending:
            for f in pending:
                f.cancel()
            raise SystemExit(f"abandoned: {len(pending)} requests still running {OVERRUN:g} s after the schedule")
    return results, lag


def gossip_counters(proc: NodeProcess) -> dict[str, float]:
    """Return the node's gossip rounds and completed and failed exchanges so far (from /metrics)."""
    text = requests.get(proc.url + "/metrics", timeout=REQUEST_TIMEOUT).text
    wanted = {"sd_gossip_rounds": "rounds", "sd_gossip_exchanges_ok": "ok", "sd_gossip_exchanges_failed": "failed"}
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name in wanted:
            out[wanted[family.name]] = family.samples[0].value
    return out


def gossip_rates(procs: Sequence[NodeProcess], before: list[dict], seconds: float) -> list[dict[str, float]]:
    """Return per node the counters' increase per second since ``before``."""
    after = [gossip_counters(p) for p in procs]
    return [{k: (a[k] - b[k]) / seconds for k in a} for a, b in zip(after, before, strict=True)]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(results: Results) -> dict[str, dict]:
    """Return per operation: count, errors, p50 / p99 / max latency in milliseconds."""
    out = {}
    for op in ("register", "renew", "list"):
        lat = results.latencies.get(op, [])
        if not lat:
            continue
        out[op] = {"count": len(lat), "errors": results.errors.get(op, 0),
                   "p50_ms": round(statistics.median(lat) * 1000, 1),
                   "p99_ms": round(percentile(lat, 0.99) * 1000, 1), "max_ms": round(max(lat) * 1000, 1)}
        if op in results.examples:
            out[op]["error_example"] = results.examples[op]
    return out


def measure(args: argparse.Namespace, folder: Path) -> dict:
    """Start the cluster, measure gossip at rest, run the load, measure gossip under it; return the figures."""
    flags = ("--preset", "default", "--ttl", str(args.ttl), "--log-level", "WARNING")
    procs = cluster_of(args.nodes, *flags, folder=folder)
    try:
        joined = wait_until(lambda: all(p.get("/health").get("peers") == args.nodes - 1 for p in procs)
                            if all(p.running() for p in procs) else False, timeout=30,
                            retry_on=(requests.RequestException,))
        if not joined.ok:
            raise SystemExit("the cluster did not form within 30 s")
        before = [gossip_counters(p) for p in procs]
        time.sleep(args.rest)
        rest = gossip_rates(procs, before, args.rest)
        calls = schedule(args.instances, args.ttl, args.list_rate, args.seconds, args.nodes)
        client = Client([p.url for p in procs], args.list_all)
        before, t0 = [gossip_counters(p) for p in procs], time.monotonic()
        results, lag = run_load(client, calls, args.workers)
        load = gossip_rates(procs, before, time.monotonic() - t0)
        t1, expected = time.monotonic(), args.instances + args.nodes
        converged = wait_until(lambda: [len(p.get("/registry/list", timeout=REQUEST_TIMEOUT)) for p in procs],
                               passed=lambda counts: all(c == expected for c in counts), timeout=30)
        return {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "operations": summarize(results), "max_send_lag_ms": round(lag * 1000, 1),
                "gossip_at_rest": rest, "gossip_under_load": load, "listed_after": converged.last,
                "converged_after_s": round(time.monotonic() - t1, 2) if converged.ok else None}
    finally:
        stop_all(procs)


def report(figures: dict) -> None:
    """Print the figures as two small tables."""
    s = figures["settings"]
    print(f"{s['nodes']} nodes, {s['instances']} instances renewing every {s['ttl'] / 3:g} s, "
          f"{s['list_rate']:g} lookups/s, {s['seconds']:g} s (max send lag {figures['max_send_lag_ms']} ms)")
    print(f"{'operation':<10} {'count':>6} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for op, f in figures["operations"].items():
        print(f"{op:<10} {f['count']:>6} {f['errors']:>6} {f['p50_ms']:>8} {f['p99_ms']:>8} {f['max_ms']:>8}")
        if "error_example" in f:
            print(f"  e.g. {f['error_example']}")
    print(f"{'node':<6} {'rounds/s rest':>14} {'rounds/s load':>14} {'exch ok/s rest':>15} {'exch ok/s load':>15} "
          f"{'failed/s load':>14}")
    for i, (r, lo) in enumerate(zip(figures["gossip_at_rest"], figures["gossip_under_load"], strict=True)):
        print(f"n{i + 1:<5} {r['rounds']:>14.2f} {lo['rounds']:>14.2f} {r['ok']:>15.2f} {lo['ok']:>15.2f} "
              f"{lo['failed']:>14.2f}")
    after = figures["converged_after_s"]
    print(f"every node listed every instance {after} s after the load" if after is not None
          else f"not converged 30 s after the load; listed: {figures['listed_after']}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--ttl", type=float, default=30.0, help="lease of the nodes, s; instances renew every ttl/3")
    ap.add_argument("--list-rate", type=float, default=50.0, help="lookups a second")
    ap.add_argument("--list-all", action="store_true", help="look up the whole table, not one app")
    ap.add_argument("--seconds", type=float, default=30.0, help="length of the load")
    ap.add_argument("--rest", type=float, default=10.0, help="seconds of gossip measured at rest before the load")
    ap.add_argument("--workers", type=int, default=32, help="client threads")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    if not (1 <= args.nodes <= 5 and 0 < args.seconds <= 600 and args.instances <= 100_000):
        ap.error("keep it bounded: 1..5 nodes, at most 600 s, at most 100,000 instances")
    with tempfile.TemporaryDirectory(prefix="sd-load-") as folder:
        figures = measure(args, Path(folder))
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
