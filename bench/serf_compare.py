"""Propagation time and at-rest traffic of our nodes next to HashiCorp Serf, on loopback.

For each cluster size N, starts N of our nodes (``python -m node --preset local``) and N Serf
agents (``serf agent -profile lan``) as processes on 127.0.0.1, both up at the same time, then:

1. at rest: counts the loopback bytes of each system for a quiet window with iptables byte
   counters on each system's port range (the same method for both), plus our own
   ``sd_gossip_bytes_*`` counters as a cross-check;
2. alternating trials: ours registers a new address at a random node and reads every node's
   ``seen_at`` for it; Serf runs ``serf tags -set`` at a random agent and stamps the
   ``serf: EventMemberUpdate`` log line of every agent as it arrives on the agent's stdout.
   Propagation time = last node's instant - the instant just before the request.

Serf's event handlers (``bench/serf_event.sh``) also record each agent's member-update; their
delay after the log line is reported, because the agent delivers member events to handlers
through a coalescer, so handler timestamps are not arrival times.

Usage (as root, for apt-get and iptables):
    .venv/bin/python bench/serf_compare.py [--nodes 10,25,50] [--repeats 10]
        [--interval 0.2] [--fanout 3] [--rest-seconds 15] [--transport udp|http]
"""


from __future__ import annotations

import argparse
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serfbench.common import BenchError, Trial  # noqa: E402
from serfbench.ours import OurCluster  # noqa: E402
from serfbench.ports import LoopbackBytes, free_block  # noqa: E402
from serfbench.serf import SERF_PROFILES, SERF_QUIESCENT, SerfCluster, ensure_serf  # noqa: E402

from harness import theory  # noqa: E402
from harness.experiment.summary import quantile  # noqa: E402


@dataclass
class Result:
    """Everything measured for one system at one N."""

    system: str
    n: int
    trials: list[Trial] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # trials not seen everywhere in time
    bytes_per_node_s: float | None = None  # iptables, in+out of one node
    metric_bytes_per_node_s: float | None = None  # ours only, from /metrics
    rumors_at_rest: int | None = None  # ours only: rumors sent (answered or not) over the quiet window

    def stat(self, attr: str, q: float) -> float | None:
        """The ``q``-quantile of a trial figure (``total``, ``local``, ``spread``...) over the trials."""
        xs = [x for t in self.trials if (x := getattr(t, attr)) is not None]
        return quantile(xs, q) if xs else None


def measure_n(
    n: int, args, ports: dict[str, int], counter: LoopbackBytes, profile: str, rng: random.Random, tmp: str
) -> tuple[Result, Result]:
    ours = OurCluster(n, ports["ours"], args.interval, args.fanout, tmp, args.transport)
    serf = SerfCluster(n, ports["serf"], ports["rpc"], profile, tmp)
    res_o, res_s = Result("ours", n), Result("serf", n)
    try:
        t_start = time.monotonic()
        serf.start()
        ours.start()
        serf.wait_converged(120)
        ours.wait_converged(180)
        print(f"  N={n}: both clusters converged in {time.monotonic() - t_start:.1f} s; settling {args.settle:.0f} s")
        time.sleep(args.settle)

        # At rest: our metrics around the window, iptables inside it, so scrapes are not counted.
        rumors = ("sd_gossip_rumors_sent_total", "sd_gossip_rumors_failed_total", "sd_gossip_rumors_dropped_total")
        r0 = ours.metric_sum(*rumors)
        m0, w0 = ours.metric_bytes(), time.monotonic()
        c0 = counter.read()
        time.sleep(args.rest_seconds)
        c1, w1 = counter.read(), time.monotonic()
        m1, w2 = ours.metric_bytes(), time.monotonic()
        res_o.rumors_at_rest = ours.metric_sum(*rumors) - r0
        if c0:
            # Each loopback packet is counted once; it leaves one node and enters another.
            res_o.bytes_per_node_s = 2 * (c1["ours"] - c0["ours"]) / n / (w1 - w0)
            res_s.bytes_per_node_s = 2 * (c1["serf"] - c0["serf"]) / n / (w1 - w0)
        res_o.metric_bytes_per_node_s = (m1 - m0) / n / (w2 - w0)

        # Alternate the systems trial by trial, in random order, so both see the same noise.
        for k in range(args.repeats):
            order = [(ours, res_o), (serf, res_s)]
            rng.shuffle(order)
            for cluster, res in order:
                time.sleep(rng.uniform(0.3, 0.8))  # a random phase against both gossip timers
                try:
                    res.trials.append(cluster.trial(k, rng, args.trial_timeout))
                except BenchError as exc:  # one slow trial on a loaded machine is data, not a crash
                    res.failures.append(str(exc))
    finally:
        ours.stop()
        serf.stop()
    return res_o, res_s



def fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def _system_row(res: Result, label: str, serf: Result | None, iv: float) -> str:
    """One propagation row; ``serf`` given on our row, for the ratios at the right."""
    med, p95 = res.stat("total", 0.5), res.stat("total", 0.95)
    if med is None or p95 is None:
        return f"{label:<15} {res.n:>3} no trial completed"
    ratio_m = ratio_p = ratio_s = ""
    if serf is not None and serf.trials:
        ratio_m = f"{med / serf.stat('total', 0.5):.2f}"
        ratio_p = f"{p95 / serf.stat('total', 0.95):.2f}"
        ratio_s = f"{res.stat('spread', 0.5) / serf.stat('spread', 0.5):.2f}"
    return (f"{label:<15} {res.n:>3} {fmt(med):>7} {fmt(p95):>7} {fmt(res.stat('total', 1.0)):>7}"
            f" {med / iv:>6.1f} {fmt(res.stat('local', 0.5)):>6} {fmt(res.stat('spread', 0.5)):>6}"
            f" {ratio_m:>13} {ratio_p:>13} {ratio_s:>6}"
            f" {fmt(res.bytes_per_node_s, '', 0):>9} {fmt(res.metric_bytes_per_node_s, '', 0):>9}")


def _serf_bound_row(o: Result, s: Result, attr: str, label: str) -> str:
    """A row of one of Serf's two upper bounds alone (log line, handler), ours divided by it."""
    m, p = s.stat(attr, 0.5), s.stat(attr, 0.95)
    ours_m, ours_p = o.stat("total", 0.5), o.stat("total", 0.95)
    return (f"{label:<15} {s.n:>3} {fmt(m):>7} {fmt(p):>7} {fmt(s.stat(attr, 1.0)):>7}"
            f" {'':>6} {'':>6} {'':>6} {fmt(ours_m / m if m and ours_m is not None else None):>13}"
            f" {fmt(ours_p / p if p and ours_p is not None else None):>13}")


def print_propagation(results: list[tuple[Result, Result]], args) -> None:
    """The propagation table of both systems at every N, then the failed trials."""
    print()
    print(f"Propagation: seconds from request to the last of N nodes; {args.repeats} trials per system and N.")
    print("  local = median time until the node that took the request has it (HTTP POST for ours, `serf tags` CLI")
    print("  + RPC for Serf); spread = median of (last - local): the dissemination alone, ratio ours/serf at right")
    hdr = (
        f"{'system':<15} {'N':>3} {'median':>7} {'p95':>7} {'max':>7} {'rounds':>6} {'local':>6}"
        f" {'spread':>6} {'ours/serf med':>13} {'ours/serf p95':>13} {'spread':>6} {'B/node/s':>9} {'(metrics)':>9}"
    )
    print(hdr)
    print("-" * len(hdr))
    for o, s in results:
        print(_system_row(o, "ours", s, args.interval))
        print(_system_row(s, "serf", None, args.interval))
        print(_serf_bound_row(o, s, "logline", "serf log line"))
        print(_serf_bound_row(o, s, "handler", "serf handler"))
    failures = [f for pair in results for r in pair for f in r.failures]
    if failures:
        print(f"\nFailed trials (left out of the figures above): {len(failures)}")
        for f in failures:
            print(f"  {f}")


def print_serf_timing(results: list[tuple[Result, Result]]) -> None:
    """How Serf's arrival instants were taken, and how far its handlers lag its log lines."""
    lags = [x for _, s in results for t in s.trials for x in t.handler_lag]
    print()
    print(
        "serf = per agent, the earlier of two upper bounds on when it learned the tag: its"
        " `serf: EventMemberUpdate` log line stamped when read from its stdout (serf log line), and its"
        f" member-update handler's `date` minus the coalescer's {SERF_QUIESCENT:g} s quiescent period."
    )
    if lags:
        tighter = sum(t.handler_tighter for _, s in results for t in s.trials)
        print(
            f"Serf handler time - log line ({len(lags)} agent-trials): median {statistics.median(lags) * 1000:.0f} ms,"
            f" p95 {quantile(lags, 0.95) * 1000:.0f} ms, min {min(lags) * 1000:.0f} ms,"
            f" max {max(lags) * 1000:.0f} ms; the handler bound was the tighter in {tighter} of {len(lags)}"
        )
        print(
            "  (handlers see member events only after the agent's coalescer: handler timestamps alone"
            f" would add ~{SERF_QUIESCENT:g} s to Serf; the spawn itself costs the part above {SERF_QUIESCENT:g} s)"
        )


def print_reference(sizes: list[int], args) -> None:
    """Serf's convergence model and the push-pull table (harness.theory) at the sizes measured."""
    iv, f = args.interval, args.fanout
    print()
    print("Reference (REFERENCE.md), at this interval:")
    for n in sizes:
        r = math.ceil(theory.serf_rounds(n, f))
        line = f"  N={n:>3}: Serf convergence calculator, 99.99% informed: {r} rounds = {r * 0.2:.1f} s at 200 ms"
        table = theory.PUSH_PULL.get(n, {}).get(f)
        if table:
            mean, p99 = table
            line += (f"; synchronous push-pull f={f}: mean {mean} / p99 {p99} rounds"
                     f" = {mean * iv:.2f} / {p99 * iv:.2f} s")
        print(line)
    print(
        "  (Serf's calculator at N=30: 9 rounds = 1.8 s; memberlist retransmits a broadcast"
        " 4 x log10(N+1) times, piggybacked on gossip to 3 nodes every 200 ms)"
    )


def report(results: list[tuple[Result, Result]], args) -> None:
    """Print everything measured, then the theory beside it."""
    print_propagation(results, args)
    print_serf_timing(results)
    print()
    print(
        "Bytes per node per second at rest (in+out of one node, averaged over nodes): iptables byte"
        f" counters on loopback for each system's ports over {args.rest_seconds:.0f} s, IP+TCP/UDP headers"
        " included; (metrics) = ours from sd_gossip_bytes_{sent,received}_total, HTTP payload+headers only."
    )
    print("Ours, rumors (eager pushes) sent during that window, all nodes: "
          + ", ".join(f"N={o.n}: {o.rumors_at_rest}" for o, _ in results))
    print_reference([o.n for o, _ in results], args)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="10,25,50", help="comma-separated cluster sizes")
    ap.add_argument("--repeats", type=int, default=10, help="trials per system and N")
    ap.add_argument("--interval", type=float, default=0.2, help="our gossip interval, seconds")
    ap.add_argument("--fanout", type=int, default=3, help="our peers per round")
    ap.add_argument("--transport", choices=("udp", "http"), default=None,
                    help="our gossip transport (default: the node's)")
    ap.add_argument("--rest-seconds", type=float, default=15.0, help="at-rest window for bytes")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after convergence before measuring")
    ap.add_argument("--trial-timeout", type=float, default=20.0, help="bound on one propagation trial")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    if not sizes or min(sizes) < 2 or args.repeats < 1:
        ap.error("need sizes >= 2 and repeats >= 1")

    profile = {0.2: "lan", 0.1: "local"}.get(round(args.interval, 3), "lan")
    if SERF_PROFILES[profile]["GossipInterval"] != args.interval:
        print(
            f"! Serf cannot run at {args.interval} s: its gossip interval comes only from -profile;"
            f" using -profile {profile} ({SERF_PROFILES[profile]['GossipInterval']} s)"
        )
    # SIGTERM takes the same way out as Ctrl-C, through every finally below.
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"Serf: {ensure_serf()}; agent flag -profile {profile} -> memberlist "
        + ", ".join(f"{k} {v:g}{'' if k == 'GossipNodes' else ' s'}" for k, v in SERF_PROFILES[profile].items())
    )
    print("  (Serf 0.9 exposes no gossip-interval flag or config key; -profile selects memberlist's preset)")
    print(
        f"Ours: python -m node --preset local --interval {args.interval} --fanout {args.fanout};"
        f" seeds = first two nodes. Machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )

    rng = random.Random(args.seed)
    top = max(sizes)
    base = free_block(3 * top)
    ports = {"ours": base, "serf": base + top, "rpc": base + 2 * top}
    ranges = {"ours": (base, base + top - 1), "serf": (base + top, base + 2 * top - 1)}
    print(
        f"Ports: ours {ranges['ours'][0]}-{ranges['ours'][1]}, serf {ranges['serf'][0]}-{ranges['serf'][1]},"
        f" serf rpc {ports['rpc']}-{ports['rpc'] + top - 1} (not counted)"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="serf-compare-") as tmp, LoopbackBytes(ranges) as counter:
        try:
            for n in sizes:
                results.append(measure_n(n, args, ports, counter, profile, rng, tmp))
        except KeyboardInterrupt:
            print("interrupted; cleaned up")
        finally:
            if results:
                report(results, args)


if __name__ == "__main__":
    main()
