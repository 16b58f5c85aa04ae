"""CPU that a Docker cluster at rest spends per node, and the gossip rounds its nodes really run.

For every N: a harness cluster (local preset: fanout 3, --interval), converged, then after a
few seconds at rest the cgroup CPU time of every node container and every node's
``sd_gossip_rounds_total`` are read twice, --seconds apart. Prints per-node CPU (median and
max, in % of one core), the cluster's total in cores, and the rounds per second a node ran
against the 1 / interval it was asked for: when rounds overrun their interval (a CPU-bound
host) the loop skips ticks, and dissemination measured in seconds slows down accordingly.

At rest a converged cluster makes no versioned write (node entries are not leased), so every
exchange is one summary answered "converged". The HEALTHCHECK (bash, every 30 s) is counted in
each container's CPU.

``--transports http,udp`` measures each size once per gossip transport (SD_TRANSPORT), side by side.

Usage: python bench/cluster_cpu.py [--sizes 10,20,40] [--interval 0.2] [--seconds 20] [--image sd-node:latest]
    [--transports http,udp] [--name bench-cpu]
After a crash: python -m harness gc.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import hostlimits  # noqa: E402
from harness.cluster import DEFAULT_IMAGE, Cluster, connect  # noqa: E402

ROUNDS = "sd_gossip_rounds_total"


def cpu_ns(cluster: Cluster, node: str) -> int:
    """CPU nanoseconds the node's container has used (its cgroup)."""
    stats = cluster.client.api.stats(cluster.node(node).container, stream=False, one_shot=True)
    return stats["cpu_stats"]["cpu_usage"]["total_usage"]


def rounds(cluster: Cluster) -> list[float]:
    """Every node's gossip rounds so far, in ``cluster.nodes`` order (Cluster.metrics)."""
    samples = cluster.metrics(cluster.nodes)
    missing = [x for x in cluster.nodes if ROUNDS not in samples.get(x, {})]
    if missing:
        raise RuntimeError(f"no {ROUNDS} from {', '.join(missing)}")
    return [samples[x][ROUNDS] for x in cluster.nodes]


def measure(n: int, interval: float, seconds: float, client, image: str = DEFAULT_IMAGE,
            transport: str = "", name: str = "bench-cpu") -> dict:
    env = {"SD_TRANSPORT": transport} if transport else {}
    cluster = Cluster(nodes=n, name=f"{name}-{transport or 'default'}-{n}", client=client, interval=interval,
                      timeline=False, start_timeout=180, image=image, env=env)
    cluster.up()
    try:
        cluster.wait_converged(timeout=120)
        time.sleep(5)
        with ThreadPoolExecutor(8) as pool:
            c0 = list(pool.map(lambda x: cpu_ns(cluster, x), cluster.nodes))
            r0 = rounds(cluster)
            t0 = time.monotonic()
            time.sleep(seconds)
            c1 = list(pool.map(lambda x: cpu_ns(cluster, x), cluster.nodes))
            r1 = rounds(cluster)
            took = time.monotonic() - t0
    finally:
        cluster.down()
    cpu = [(b - a) / 1e9 / took * 100 for a, b in zip(c0, c1, strict=True)]
    rate = [(b - a) / took for a, b in zip(r0, r1, strict=True)]
    return {"n": n, "transport": transport or "default", "cpu_median": statistics.median(cpu),
            "cpu_max": max(cpu), "cores": sum(cpu) / 100, "rate": statistics.median(rate)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,20,40", help="comma-separated cluster sizes")
    ap.add_argument("--interval", type=float, default=0.2, help="seconds between gossip rounds")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the measuring window")
    ap.add_argument("--image", default=DEFAULT_IMAGE, help="node image (default %(default)s)")
    ap.add_argument("--transports", default="", help="comma-separated SD_TRANSPORT values (default: the image's)")
    ap.add_argument("--name", default="bench-cpu", help="cluster name prefix (default %(default)s)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    transports = [t for t in args.transports.split(",") if t] or [""]
    client = connect()
    hostlimits.check_neighbour_table(max(sizes))
    rows = []
    for n, transport in ((n, t) for n in sizes for t in transports):
        rows.append(measure(n, args.interval, args.seconds, client, args.image, transport, args.name))
        r = rows[-1]
        print(f"  N={n:<3} {r['transport']:<8} node CPU median {r['cpu_median']:.2f} % max {r['cpu_max']:.2f} %  "
              f"cluster {r['cores']:.2f} cores  rounds/s {r['rate']:.2f}", flush=True)
    print(f"\nimage {args.image}; cluster at rest, converged; fanout 3, interval {args.interval:g} s"
          f" (asked: {1 / args.interval:.1f} "
          f"rounds/s); {os.cpu_count()} CPUs; window {args.seconds:g} s")
    print(f"{'N':>4}{'gossip':>8}{'node CPU % (median)':>21}{'max':>7}{'cluster cores':>15}"
          f"{'rounds/s run':>14}{'/ asked':>9}")
    for r in rows:
        print(f"{r['n']:>4}{r['transport']:>8}{r['cpu_median']:>21.2f}{r['cpu_max']:>7.2f}{r['cores']:>15.2f}"
              f"{r['rate']:>14.2f}{r['rate'] * args.interval:>9.2f}")


if __name__ == "__main__":
    main()
