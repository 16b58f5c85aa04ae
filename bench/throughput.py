"""Requests per second of one node (register, renew, list) beside a no-op ceiling, measured with wrk.

Starts real node processes on 127.0.0.1 (``python -m node``: waitress + the Flask app,
the settings of node/__main__.py) and drives them with wrk over keep-alive connections:

- register: POST /registry/register_instance with a new address every request (a fresh
  node per run, so every run starts from the same empty table);
- renew: the same POST cycling over 100 addresses already registered (answers 200);
- list: GET /registry/list on a node holding 101 entries (100 + itself);
- no-op (the ceiling): GET of a route that returns a constant, added to the very same
  ``node.__main__.main`` (same waitress settings, same Flask app, middleware, error handlers
  and idle gossip loop); what separates it from the others is the registry work only.

Runs are interleaved (no-op, list, renew, register, then the next repeat) so that the noise
of a shared machine falls on all of them alike; figures are medians over the repeats. wrk
shares the CPUs with the server: its CPU share is printed beside every figure.

Leases are set to 600 s so the 100 entries stay healthy for the whole run (the local
preset's 6 s would expire them mid-run and shrink the list).

Usage: python bench/throughput.py [--concurrency 8,32] [--seconds 5] [--repeats 3]
Needs wrk (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procstat import cpu_seconds  # noqa: E402

from harness.localnode import NodeProcess  # noqa: E402
from node.config import LOCAL  # noqa: E402

RENEWED = 100  # addresses registered up front (renewals, and the size of the list)
NOOP_PATH = "/bench/noop"
# The node's own entry point with one extra route; everything else is python -m node.
NOOP_SERVER = f"""
import sys
import node.__main__ as main_mod
real = main_mod.create_app
def create_app(*args, **kwargs):
    app = real(*args, **kwargs)
    app.add_url_rule({NOOP_PATH!r}, "bench_noop", lambda: ({{"ok": True}}, 200))
    return app
main_mod.create_app = create_app
sys.exit(main_mod.main(sys.argv[1:]))
"""
NODE_ARGS = ("--preset", "local", "--ttl", "600", "--expire-grace", "600", "--tombstone-ttl", "1300",
             "--log-level", "ERROR")  # waitress logs queue depth at WARNING under load

# One JSON line from wrk's done(): counts, errors, latency percentiles (microseconds).
LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
    .. '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""
LUA_GET = LUA_DONE
# A new address per request: 10.x.y.z:port from a counter (one wrk thread, so unique).
LUA_REGISTER = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"address": "10.%d.%d.%d:%d", "app_name": "bench"}',
    math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256, 1000 + math.floor(n / 16777216))
  return wrk.format(nil, nil, nil, body)
end
""" + LUA_DONE
LUA_RENEW = f"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n % {RENEWED} + 1
  return wrk.format(nil, nil, nil, string.format('{{"address": "10.200.0.%d:80", "app_name": "bench"}}', n))
end
""" + LUA_DONE


def server(noop: bool = False) -> NodeProcess:
    """Start one node process on 127.0.0.1 (the real ``python -m node``, or with the no-op route)."""
    command = [sys.executable, "-c", NOOP_SERVER] if noop else None
    return NodeProcess(*NODE_ARGS, command=command, ready_timeout=20).start()


def entries(node: NodeProcess) -> int:
    """Entries the node lists (its /health figure)."""
    return node.get("/health", timeout=5)["entries"]


def wrk(url: str, script: str, connections: int, seconds: float, server_pid: int) -> dict:
    """Run wrk (one thread, ``connections`` keep-alive connections) and return its figures."""
    s0 = cpu_seconds(server_pid)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "-s", script, url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"wrk against {url} did not finish") from None
    wall = time.monotonic() - t0
    server_cpu = cpu_seconds(server_pid) - s0
    # Children's rusage accumulates over every wrk run: the caller subtracts.
    line = next((ln for ln in out.splitlines() if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (rc {proc.returncode}):\n{out}")
    r = json.loads(line)
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    r["server_cpu"] = server_cpu / wall
    r["wall"] = wall
    return r


def children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


KINDS = ("noop", "list", "renew", "register")  # in the order each repeat runs them
SCRIPTS = {"noop": LUA_GET, "list": LUA_GET, "renew": LUA_RENEW, "register": LUA_REGISTER}


def run(kind: str, connections: int, seconds: float, servers: dict[str, NodeProcess], scripts: dict) -> dict:
    """Measure one endpoint once; ``register`` gets a fresh node."""
    fresh = None
    if kind == "register":
        fresh = server()
        target, path = fresh, "/registry/register_instance"
    elif kind == "noop":
        target, path = servers["noop"], NOOP_PATH
    elif kind == "list":
        target, path = servers["node"], "/registry/list"
    else:
        target, path = servers["node"], "/registry/register_instance"
    try:
        c0 = children_cpu()
        r = wrk(target.url + path, scripts[kind], connections, seconds, target.pid)
        r["gen_cpu"] = (children_cpu() - c0) / r["wall"]
        r["entries_after"] = entries(target)
    finally:
        if fresh is not None:
            fresh.close()
    return r


def measure(args, levels: list[int], scripts: dict) -> tuple[dict[tuple[str, int], list[dict]], int]:
    """Start the node and the no-op node, fill the node, run every repeat; return the runs and the list size."""
    results: dict[tuple[str, int], list[dict]] = {(k, c): [] for k in KINDS for c in levels}
    with server() as node, server(noop=True) as noop:
        servers = {"node": node, "noop": noop}
        with requests.Session() as s:
            for i in range(1, RENEWED + 1):
                s.post(node.url + "/registry/register_instance",
                       json={"address": f"10.200.0.{i}:80", "app_name": "bench"}, timeout=5).raise_for_status()
        listed = len(node.get("/registry/list", timeout=5))
        # Warm-up: imports, first-request paths, connection set-up.
        for kind in ("noop", "list", "renew"):
            run(kind, levels[0], 1, servers, scripts)
        for rep in range(args.repeats):
            for c in levels:
                for kind in KINDS:
                    r = run(kind, c, args.seconds, servers, scripts)
                    results[(kind, c)].append(r)
                    print(f"  repeat {rep + 1} c={c:<3} {kind:<8} {r['rps']:8.0f} req/s"
                          f"  p50 {r['p50_us'] / 1000:6.1f} ms  p99 {r['p99_us'] / 1000:6.1f} ms"
                          f"  errors {r['errors']}  server CPU {r['server_cpu']:.2f}"
                          f"  wrk CPU {r['gen_cpu']:.2f}  entries {r['entries_after']}", flush=True)
    return results, listed


def print_table(results: dict[tuple[str, int], list[dict]], levels: list[int], listed: int, args) -> None:
    """Medians per endpoint and concurrency, beside the no-op ceiling."""
    med = statistics.median
    print()
    print(f"one node on 127.0.0.1, waitress {LOCAL.threads} threads (node default), wrk 1 thread, keep-alive; "
          f"{args.repeats} runs of {args.seconds:g} s each, medians; {os.cpu_count()} CPUs shared by wrk and the node")
    print(f"list holds {listed} entries; renew cycles over {RENEWED} addresses; register sends a new address "
          f"every request to a fresh node")
    header = (f"{'endpoint':<10}{'conc':>5}{'req/s':>9}{'/ no-op':>9}{'paired':>8}{'p50 ms':>8}{'p99 ms':>8}"
              f"{'errors':>8}{'node CPU':>10}{'wrk CPU':>9}")
    print(header)
    for c in levels:
        ceiling = med([r["rps"] for r in results[("noop", c)]])
        for kind in KINDS:
            rs = results[(kind, c)]
            rps, p50, p99 = (med([r[k] for r in rs]) for k in ("rps", "p50_us", "p99_us"))
            paired = med([r["rps"] / n["rps"] for r, n in zip(rs, results[("noop", c)], strict=True)])
            print(f"{kind:<10}{c:>5}{rps:>9.0f}{rps / ceiling:>9.2f}{paired:>8.2f}{p50 / 1000:>8.1f}"
                  f"{p99 / 1000:>8.1f}{sum(r['errors'] for r in rs):>8}"
                  f"{med([r['server_cpu'] for r in rs]):>10.2f}{med([r['gen_cpu'] for r in rs]):>9.2f}")
    reg_entries = [r["entries_after"] for c in levels for r in results[("register", c)]]
    print(f"register runs ended with {min(reg_entries)}..{max(reg_entries)} entries on their node "
          f"(every write copies the in-memory snapshot, so the rate falls as the table grows)")
    print("/ no-op = ratio of the medians; paired = median of the per-repeat ratios (each beside its own no-op run)")
    print("CPU columns are cores (1.00 = one core) averaged over the run; node + wrk near "
          f"{os.cpu_count()} means the machine, not the node alone, was the limit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", default="8,32", help="comma-separated wrk connection counts")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("throughput: wrk not found (Debian: apt-get install -y wrk)")
    levels = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        scripts = {kind: f"{tmp}/{kind}.lua" for kind in KINDS}
        for kind, path in scripts.items():
            Path(path).write_text(SCRIPTS[kind])
        results, listed = measure(args, levels, scripts)
    print_table(results, levels, listed, args)


if __name__ == "__main__":
    main()
