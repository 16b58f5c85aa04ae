"""CPU cost of one gossip exchange and of an idle node, measured on real node processes.

Starts node processes on 127.0.0.1 and reads their CPU time from /proc. Prints medians
over repeats. Usage: python bench/node_cost.py [--entries 50] [--exchanges 300]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node.transport import HttpTransport  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return user+system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(tmp: str, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "node", "--port", str(port), "--db", f"{tmp}/{port}.db",
         "--log-level", "WARNING", *extra],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url + "/health", timeout=0.5)
            return proc, f"127.0.0.1:{port}"
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("node did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=50, help="registrations held by the node")
    ap.add_argument("--exchanges", type=int, default=300, help="exchanges per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # Server: a node that gossips rarely, so we count only the exchanges we drive.
        proc, addr = start_node(tmp, "--interval", "3600")
        try:
            for i in range(args.entries):
                requests.post(f"http://{addr}/registry/register_instance",
                              json={"address": f"10.3.{i // 250}.{i % 250 + 1}:80", "app_name": "bench"}, timeout=2)
            entries = requests.get(f"http://{addr}/registry/entries", timeout=2).json()
            # A converged peer: same digest, so the reply carries no entries (the at-rest case).
            digest = [[a, e["version"], e["origin"]] for a, e in entries.items()]
            transport = HttpTransport()
            syn = {"type": "syn", "from": "127.0.0.1:1", "digest": digest}
            server, client, wire = [], [], []
            for _ in range(args.repeats):
                s0, c0 = cpu_seconds(proc.pid), time.process_time()
                nbytes = 0
                for _ in range(args.exchanges):
                    r = transport.send(addr, syn, 2.0)
                    nbytes += r.sent + r.received
                server.append((cpu_seconds(proc.pid) - s0) / args.exchanges)
                client.append((time.process_time() - c0) / args.exchanges)
                wire.append(nbytes / args.exchanges)
        finally:
            proc.terminate()
            proc.wait(10)
        # Idle: a node alone with the local preset (200 ms rounds), nobody to talk to.
        proc, _ = start_node(tmp, "--preset", "local")
        try:
            time.sleep(1.0)
            c0 = cpu_seconds(proc.pid)
            time.sleep(args.idle_seconds)
            idle = (cpu_seconds(proc.pid) - c0) / args.idle_seconds
        finally:
            proc.terminate()
            proc.wait(10)
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"entries held: {args.entries}; exchanges per repeat: {args.exchanges}; repeats: {args.repeats}")
    print(f"server CPU per exchange (responder): {ms(server):.2f} ms median")
    print(f"client CPU per exchange (initiator, this process): {ms(client):.2f} ms median")
    print(f"bytes per exchange at rest (headers included): {statistics.median(wire):.0f}")
    print(f"idle node CPU (no peers, 200 ms rounds): {idle * 100:.2f} % of one core")
    per_node = (ms(server) + ms(client)) / 1000 * 3 * 5  # fanout 3, 5 rounds/s, both ends
    print(f"=> one node at fanout 3, 200 ms rounds spends ~{per_node * 100:.0f} % of a core on gossip;"
          f" 2 cores carry ~{int(2 / per_node)} such nodes")


if __name__ == "__main__":
    main()
