"""CPU cost of one gossip exchange and of an idle node, measured on real node processes.

Starts node processes on 127.0.0.1 and reads their CPU time from /proc. Prints medians
over repeats, for open gossip and for gossip signed with a key (HMAC-SHA256, one key),
over HTTP and over UDP datagrams (node/udp.py), side by side. Bytes are those the nodes
count: HTTP messages with their headers, datagrams whole; no TCP/UDP/IP headers.
Usage: python bench/node_cost.py [--entries 50] [--exchanges 300] [--keys both|open|signed]
    [--transport both|http|udp]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from procstat import cpu_seconds  # noqa: E402

from harness.localnode import NodeProcess  # noqa: E402
from node.config import LOCAL  # noqa: E402
from node.gossip import Node  # noqa: E402
from node.keyring import generate_key  # noqa: E402
from node.protocol import Lease  # noqa: E402
from node.store import Store  # noqa: E402
from node.transport import HttpTransport  # noqa: E402
from node.udpclient import UdpTransport  # noqa: E402
from node.wire import Summary, encode  # noqa: E402

QUIET = ("--log-level", "WARNING")


def exchange_costs(args, key: str | None, over: str) -> dict[str, tuple[list, list, list]]:
    """Per kind of exchange: server CPU, client CPU and bytes per exchange, one value per repeat.

    With ``key`` both ends sign and check every message with it; ``over`` is the transport.
    """
    keys = ("--gossip-keys", key) if key else ()
    # Server: a node that gossips rarely, so we count only the exchanges we drive.
    with NodeProcess(*QUIET, "--interval", "3600", "--transport", over, *keys) as proc:
        addr = proc.address
        for i in range(args.entries):
            requests.post(f"{proc.url}/registry/register_instance",
                          json={"address": f"10.3.{i // 250}.{i % 250 + 1}:80", "app_name": "bench"}, timeout=2)
        entries = proc.get("/registry/entries")
        # The initiator: a node in this process that already holds what the server holds
        # (one exchange syncs it), so every further exchange is the at-rest case.
        config = dataclasses.replace(LOCAL, port=1, advertise="127.0.0.1:1", gossip_keys=(key,) if key else ())
        client = Node(config, Store(Lease(600, 600, 1800)), parallel=False)
        http = HttpTransport(keyring=client.keyring)
        udp = UdpTransport(client.keyring, config.max_datagram, http)
        transport = client.transport = udp if over == "udp" else http
        first = client.exchange(addr)
        assert first.ok and first.received == len(entries), first
        # A one-bucket summary that differs: the server answers with its whole digest.
        full = encode(Summary("127.0.0.1:1", ["0"]), 0.0)
        rows: dict[str, tuple[list, list, list]] = {"summary": ([], [], []), "full digest": ([], [], [])}
        for _ in range(args.repeats):
            for kind, (server, client_cpu, wire) in rows.items():
                s0, c0 = cpu_seconds(proc.pid), time.process_time()
                nbytes = 0
                for _ in range(args.exchanges):
                    if kind == "summary":
                        r = client.exchange(addr)
                        assert r.ok and r.received == 0, r
                        nbytes += r.bytes_sent + r.bytes_received
                    else:
                        sent = transport.send(addr, full, 2.0)
                        nbytes += sent.sent + sent.received
                server.append((cpu_seconds(proc.pid) - s0) / args.exchanges)
                client_cpu.append((time.process_time() - c0) / args.exchanges)
                wire.append(nbytes / args.exchanges)
    return rows


def idle_cpu(seconds: float) -> float:
    """CPU share of a node alone with the local preset (200 ms rounds), nobody to talk to."""
    with NodeProcess(*QUIET, "--preset", "local") as proc:
        time.sleep(1.0)
        c0 = cpu_seconds(proc.pid)
        time.sleep(seconds)
        return (cpu_seconds(proc.pid) - c0) / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=50, help="registrations held by the node")
    ap.add_argument("--exchanges", type=int, default=300, help="exchanges per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    ap.add_argument("--keys", choices=("both", "open", "signed"), default="both",
                    help="gossip without keys, signed with a fresh key, or both (default)")
    ap.add_argument("--transport", choices=("both", "http", "udp"), default="both",
                    help="gossip over HTTP, over UDP datagrams, or both (default)")
    args = ap.parse_args()
    modes = {"open": None, "signed": generate_key()}  # a throwaway key, never printed
    overs = [t for t in ("http", "udp") if args.transport in (t, "both")]
    by_mode = {(m, t): exchange_costs(args, k, t) for t in overs for m, k in modes.items() if args.keys in (m, "both")}
    idle = idle_cpu(args.idle_seconds)
    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"entries held: {args.entries + 1}; exchanges per repeat: {args.exchanges}; repeats: {args.repeats}")
    print(f"{'exchange at rest':<18}{'gossip':<8}{'over':<6}{'server CPU ms':>14}{'client CPU ms':>14}{'bytes':>8}")
    for kind in ("summary", "full digest"):
        for (mode, over), rows in by_mode.items():
            server, client_cpu, wire = rows[kind]
            print(f"{kind:<18}{mode:<8}{over:<6}{ms(server):>14.2f}{ms(client_cpu):>14.2f}"
                  f"{statistics.median(wire):>8.0f}")
    print("(summary = what nodes send: bucket hashes first; full digest = a summary that differs in its one"
          " bucket, answered with every entry's version, for comparison: over UDP it does not fit one"
          " datagram, so it is a \"too big\" datagram and then HTTP)")
    print(f"idle node CPU (no peers, 200 ms rounds): {idle * 100:.2f} % of one core")
    for (mode, over), rows in by_mode.items():
        server, client_cpu, wire = rows["summary"]
        per_node = (ms(server) + ms(client_cpu)) / 1000 * 3 * 5  # fanout 3, 5 rounds/s, both ends
        print(f"=> at rest ({mode} gossip over {over}), one node at fanout 3 and 200 ms rounds spends"
              f" ~{per_node * 100:.1f} % of a core on gossip and sends+receives"
              f" ~{statistics.median(wire) * 30 / 1024:.1f} KiB/s; 2 cores carry ~{int(2 / per_node)} such nodes")


if __name__ == "__main__":
    main()
