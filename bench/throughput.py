"""Requests per second of one node (list, renew, register) beside a no-op ceiling, at several table sizes, with wrk.

Starts real node processes on 127.0.0.1 (``python -m node``: waitress + the Flask app,
the settings of node/__main__.py) and drives them with wrk over keep-alive connections.
For each table size N (default 100 and 10,000):

- the node is filled through the API (N registrations, one after another, bounded in
  time), so it holds N + 1 entries (N + itself);
- list: GET /registry/list (the whole table, no filter), as it is (no Accept-Encoding);
- list-gzip: the same with ``Accept-Encoding: gzip``, as real clients send it (requests,
  browsers, curl --compressed): the node answers a gzip body (both sizes are printed);
- renew: POST /registry/register_instance cycling over the N registered addresses (200);
- register: the same POST with a new address every request, on a fresh node started from
  a copy of the filled node's SQLite file (its own self-entry removed), so every run starts
  from the same N entries;
- no-op (the ceiling): GET of a route that returns a constant, added to the very same
  ``node.__main__.main`` (same waitress settings, same Flask app, middleware, error handlers
  and idle gossip loop); what separates it from the others is the registry work only.

Runs are interleaved (no-op, list, renew, register, then the next repeat) so that the noise
of a shared machine falls on all of them alike; figures are medians over the repeats. wrk
shares the CPUs with the server: its CPU share is printed beside every figure.

Leases are set to 600 s so the entries stay healthy for the whole run (the local preset's
6 s would expire them mid-run and shrink the list).

Usage: python bench/throughput.py [--sizes 100,10000] [--concurrency 8,32] [--seconds 5] [--repeats 3]
Needs wrk (Debian: apt-get install -y wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
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

FILL_SECONDS = 300.0  # the most a table fill may take before the benchmark gives up
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
LUA_GZIP = """
wrk.headers["Accept-Encoding"] = "gzip"
""" + LUA_DONE
# A new address per request: 10.x.y.z:port from a counter (one wrk thread, so unique); the
# filled addresses are 10.200.*.*:80, which the counter reaches only after 13 million requests.
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
# Renewals cycle over the filled addresses (``filled_address``), the same formula in Lua.
LUA_RENEW = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n % SIZE + 1
  return wrk.format(nil, nil, nil, string.format('{"address": "10.200.%d.%d:80", "app_name": "bench"}',
    math.floor(n / 256), n % 256))
end
""" + LUA_DONE

KINDS = ("noop", "list", "list-gzip", "renew", "register")  # in the order each repeat runs them


def filled_address(i: int) -> str:
    """The i-th address a fill registers (1-based; 10.200.0.1:80, ...)."""
    return f"10.200.{i // 256}.{i % 256}:80"


def server(noop: bool = False, db: Path | None = None) -> NodeProcess:
    """Start one node process on 127.0.0.1 (the real ``python -m node``, or with the no-op route)."""
    command = [sys.executable, "-c", NOOP_SERVER] if noop else None
    return NodeProcess(*NODE_ARGS, command=command, db=db, ready_timeout=30).start()


def fill(node: NodeProcess, size: int) -> float:
    """Register ``size`` addresses through the API, one request after another; return the seconds taken."""
    t0 = time.monotonic()
    with requests.Session() as s:
        for i in range(1, size + 1):
            s.post(node.url + "/registry/register_instance",
                   json={"address": filled_address(i), "app_name": "bench"}, timeout=10).raise_for_status()
            if time.monotonic() - t0 > FILL_SECONDS:
                raise RuntimeError(f"filling {size} entries took over {FILL_SECONDS:g} s (stopped at {i})")
    return time.monotonic() - t0


def template(node: NodeProcess, path: Path) -> Path:
    """Copy the node's SQLite file to ``path`` without the node's own entry (a fresh node must not gossip to it)."""
    src, dst = sqlite3.connect(node.db), sqlite3.connect(path)
    try:
        src.backup(dst)
        dst.execute("DELETE FROM entry WHERE address = ?", (node.address,))
        dst.commit()
    finally:
        src.close()
        dst.close()
    return path


def body_sizes(url: str) -> str:
    """Say how large the listing's body is as it is and gzip-encoded, as the two list runs receive it."""
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=30)
    packed = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=30, stream=True)
    raw = packed.raw.read(decode_content=False)
    encoding = packed.headers.get("Content-Encoding", "identity")
    return f"body {len(plain.content):,} bytes; with Accept-Encoding: gzip, {len(raw):,} bytes {encoding}"


def entries(node: NodeProcess) -> int:
    """Entries the node lists (its /health figure)."""
    return node.get("/health", timeout=10)["entries"]


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wrk(url: str, script: str, connections: int, seconds: float, server_pid: int) -> dict:
    """Run wrk (one thread, ``connections`` keep-alive connections) and return its figures."""
    s0, c0 = cpu_seconds(server_pid), children_cpu()
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
    line = next((ln for ln in out.splitlines() if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (rc {proc.returncode}):\n{out}")
    r = json.loads(line)
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]
    r["server_cpu"] = (cpu_seconds(server_pid) - s0) / wall
    r["gen_cpu"] = (children_cpu() - c0) / wall  # children's rusage includes the wrk just reaped
    return r


class Bench:
    """One table size: a filled node, a no-op node, and a template for fresh register nodes."""

    def __init__(self, size: int, scripts: dict[str, str], tmp: Path) -> None:
        self.size, self.scripts, self.tmp = size, scripts, tmp

    def run(self, kind: str, connections: int, seconds: float) -> dict:
        """Measure one endpoint once; ``register`` gets a fresh node from the template."""
        fresh = None
        if kind == "register":
            db = self.tmp / "fresh.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            shutil.copyfile(self.template, db)
            fresh = server(db=db)
            target, path = fresh, "/registry/register_instance"
        elif kind == "noop":
            target, path = self.noop, NOOP_PATH
        elif kind in ("list", "list-gzip"):
            target, path = self.node, "/registry/list"
        else:
            target, path = self.node, "/registry/register_instance"
        try:
            r = wrk(target.url + path, self.scripts[kind], connections, seconds, target.pid)
            r["entries_after"] = entries(target)
        finally:
            if fresh is not None:
                fresh.close()
        return r

    def measure(self, levels: list[int], seconds: float, repeats: int) -> dict[tuple[str, int], list[dict]]:
        """Fill the node, then run every repeat; return the runs per (kind, concurrency)."""
        results: dict[tuple[str, int], list[dict]] = {(k, c): [] for k in KINDS for c in levels}
        with server() as self.node, server(noop=True) as self.noop:
            took = fill(self.node, self.size)
            self.template = template(self.node, self.tmp / f"template-{self.size}.db")
            self.listed = len(self.node.get("/registry/list", timeout=30))
            self.bodies = body_sizes(self.node.url + "/registry/list")
            print(f"size {self.size}: filled in {took:.1f} s, the node lists {self.listed} entries "
                  f"({self.bodies})", flush=True)
            for kind in ("noop", "list", "list-gzip", "renew"):  # warm-up: imports, first-request paths, connections
                self.run(kind, levels[0], 1)
            for rep in range(repeats):
                for c in levels:
                    for kind in KINDS:
                        r = self.run(kind, c, seconds)
                        results[(kind, c)].append(r)
                        print(f"  size {self.size} repeat {rep + 1} c={c:<3} {kind:<9} {r['rps']:8.0f} req/s"
                              f"  p50 {r['p50_us'] / 1000:6.1f} ms  p99 {r['p99_us'] / 1000:6.1f} ms"
                              f"  errors {r['errors']}  server CPU {r['server_cpu']:.2f}"
                              f"  wrk CPU {r['gen_cpu']:.2f}  entries {r['entries_after']}", flush=True)
        return results


def print_table(bench: Bench, results: dict[tuple[str, int], list[dict]], levels: list[int]) -> None:
    """Medians per endpoint and concurrency, beside the no-op ceiling."""
    med = statistics.median
    print()
    print(f"size {bench.size}: list holds {bench.listed} entries ({bench.bodies});")
    print(f"renew cycles over {bench.size} addresses; "
          f"register sends a new address every request to a fresh node holding {bench.size} entries")
    print(f"{'endpoint':<11}{'conc':>5}{'req/s':>9}{'/ no-op':>9}{'paired':>8}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'errors':>8}{'node CPU':>10}{'wrk CPU':>9}")
    for c in levels:
        ceiling = med([r["rps"] for r in results[("noop", c)]])
        for kind in KINDS:
            rs = results[(kind, c)]
            rps, p50, p99 = (med([r[k] for r in rs]) for k in ("rps", "p50_us", "p99_us"))
            paired = med([r["rps"] / n["rps"] for r, n in zip(rs, results[("noop", c)], strict=True)])
            print(f"{kind:<11}{c:>5}{rps:>9.0f}{rps / ceiling:>9.2f}{paired:>8.2f}{p50 / 1000:>8.1f}"
                  f"{p99 / 1000:>8.1f}{sum(r['errors'] for r in rs):>8}"
                  f"{med([r['server_cpu'] for r in rs]):>10.2f}{med([r['gen_cpu'] for r in rs]):>9.2f}")
    reg_entries = [r["entries_after"] for c in levels for r in results[("register", c)]]
    print(f"register runs ended with {min(reg_entries)}..{max(reg_entries)} entries on their node")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,10000", help="comma-separated table sizes (registrations filled)")
    ap.add_argument("--concurrency", default="8,32", help="comma-separated wrk connection counts")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("throughput: wrk not found; install it (Debian: apt-get install -y wrk) and run again")
    sizes = [int(n) for n in args.sizes.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    if not sizes or min(sizes) < 1 or max(sizes) > 50_000:
        sys.exit("throughput: sizes must be 1..50000")
    done: list[tuple[Bench, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            scripts = {"noop": LUA_GET, "list": LUA_GET, "list-gzip": LUA_GZIP,
                       "renew": LUA_RENEW.replace("SIZE", str(size)), "register": LUA_REGISTER}
            paths = {kind: f"{tmp}/{kind}-{size}.lua" for kind in KINDS}
            for kind, path in paths.items():
                Path(path).write_text(scripts[kind])
            bench = Bench(size, paths, Path(tmp))
            done.append((bench, bench.measure(levels, args.seconds, args.repeats)))
    print()
    print(f"one node on 127.0.0.1, waitress {LOCAL.threads} threads (node default), wrk 1 thread, keep-alive; "
          f"{args.repeats} runs of {args.seconds:g} s each, medians; {os.cpu_count()} CPUs shared by wrk and the node")
    for bench, results in done:
        print_table(bench, results, levels)
    print("/ no-op = ratio of the medians; paired = median of the per-repeat ratios (each beside its own no-op run)")
    print("CPU columns are cores (1.00 = one core) averaged over the run; node + wrk near "
          f"{os.cpu_count()} means the machine, not the node alone, was the limit")


if __name__ == "__main__":
    main()
