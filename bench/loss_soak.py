"""Soak a Docker cluster at rest under packet loss on every node: no live node may be marked down.

A harness cluster (local preset), converged; then every node drops --loss % of what it
receives (``Cluster.loss``, iptables ``statistic``; the harness's own path is spared) for
--seconds. Every --every s each node's ``/registry/list`` and ``/metrics`` are read: a node
missing from another's list is a live node reported down. At the end: the suspicions,
down marks and refutations the nodes counted (``sd_gossip_*_total``), summed, and how many
samples showed a live node missing. Every node is alive all along, so every down mark is a
false one; the issue's target is none.

Usage: python bench/loss_soak.py [--nodes 10] [--loss 10] [--seconds 300] [--image sd-node:latest] [--waves 2]
After a crash: python -m harness gc.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.cluster import DEFAULT_IMAGE, NODE_PORT, Cluster, connect  # noqa: E402

COUNTERS = ("sd_gossip_suspicions_total", "sd_gossip_down_marks_total", "sd_gossip_refutations_total",
            "sd_gossip_exchanges_failed_total", "sd_gossip_exchanges_ok_total")


def totals(cluster: Cluster) -> dict[str, float]:
    """Each counter of COUNTERS summed over the nodes that answered."""
    samples = cluster.metrics(cluster.nodes)
    return {c: sum(s.get(c, 0.0) for s in samples.values()) for c in COUNTERS}


def missing(cluster: Cluster) -> list[tuple[str, str]]:
    """(observer, node) pairs where the observer does not list the node as healthy."""
    views = cluster.views(cluster.nodes)
    return [(o, n) for o, view in views.items() for n in cluster.nodes
            if view.get(f"{n}:{NODE_PORT}", {}).get("status") != "healthy"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--loss", type=float, default=10.0, help="percent of received packets dropped, every node")
    ap.add_argument("--seconds", type=float, default=300.0, help="length of the soak")
    ap.add_argument("--every", type=float, default=2.0, help="seconds between two samples")
    ap.add_argument("--image", default=DEFAULT_IMAGE, help="node image (default %(default)s)")
    ap.add_argument("--waves", type=int, default=None, help="SD_PROBE_WAVES of the nodes (default: the preset's)")
    args = ap.parse_args()
    env = {"SD_PROBE_WAVES": str(args.waves)} if args.waves is not None else {}
    with Cluster(nodes=args.nodes, name=f"bench-soak-{os.getpid()}", client=connect(), timeline=False,
                 start_timeout=180, image=args.image, env=env) as cluster:
        cluster.wait_converged(timeout=120)
        before = totals(cluster)
        for n in cluster.nodes:
            cluster.loss(n, args.loss)
        t0 = time.monotonic()
        samples = bad = 0
        seen: set[tuple[str, str]] = set()
        while time.monotonic() - t0 < args.seconds:
            time.sleep(args.every)
            gaps = missing(cluster)
            samples += 1
            bad += bool(gaps)
            seen.update(gaps)
            if gaps:
                print(f"  t={time.monotonic() - t0:6.1f} s  not listed healthy: {sorted(gaps)}", flush=True)
        took = time.monotonic() - t0
        after = totals(cluster)
    delta = {c: after[c] - before[c] for c in COUNTERS}
    print(f"\nimage {args.image}; {env or 'preset probe waves'}; N={args.nodes}, {args.loss:g} % loss on every node"
          f" for {took:.0f} s;"
          f" {samples} samples, one every {args.every:g} s; {os.cpu_count()} CPUs")
    for c in COUNTERS:
        print(f"  {c:<36}{delta[c]:>10.0f}")
    print(f"  samples with a live node not listed healthy: {bad} (pairs seen: {len(seen)})")
    print("verdict:", "no live node marked down" if delta["sd_gossip_down_marks_total"] == 0 and not bad
          else "LIVE NODES MARKED DOWN")


if __name__ == "__main__":
    main()
