"""Rounds to full dissemination in simulation, printed beside the push-pull theory table.

The same node code runs N nodes in one process (harness.sim.SimCluster) with synchronous
rounds, the model of the table in REFERENCE.md: pure push-pull anti-entropy, eager push
(``node.rumor``) off; and with out-of-phase rounds, as real nodes run, eager push on
unless ``--no-eager-push`` (then the rounds alone). Per trial a new address is registered
at a random node of a converged cluster; the rounds until every node lists it are counted.

    python bench/dissemination.py [--nodes 5,10,50,100,1000] [--fanout 1,2,3] [--trials 30] [--no-eager-push]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.sim import SIM, SimCluster  # noqa: E402
from harness.theory import PUSH_PULL  # noqa: E402


def p99(xs: list[int]) -> int:
    return sorted(xs)[max(0, math.ceil(0.99 * len(xs)) - 1)]


def measure(n: int, fanout: int, trials: int, synchronous: bool, seed: int, eager: bool = True) -> list[int]:
    """Return the rounds each trial took until all n nodes listed the new address."""
    import dataclasses

    config = dataclasses.replace(SIM, fanout=fanout, eager_push=eager)
    c = SimCluster(n, config=config, seed=seed, synchronous=synchronous)
    c.wait_converged(timeout=60)
    out = []
    for i in range(trials):
        address = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:80"
        c.register(c.rng.choice(c.nodes), address, "probe")
        rounds = c.run_until(lambda a=address: len(c.holders(a)) == n, 100)
        if rounds is None:
            raise SystemExit(f"N={n} f={fanout}: {address} did not reach every node in 100 rounds")
        out.append(rounds)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="5,10,50,100", help="comma-separated cluster sizes")
    ap.add_argument("--fanout", default="1,2,3", help="comma-separated fanouts")
    ap.add_argument("--trials", type=int, default=30, help="registrations per (N, fanout)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eager-push", action=argparse.BooleanOptionalAction, default=True,
                    help="out-of-phase nodes push news at once (synchronous rounds never do)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.nodes.split(",")]
    fanouts = [int(x) for x in args.fanout.split(",")]
    print(f"{'N':>5} {'f':>2} | {'theory mean/p99':>15} | {'sync mean/p99':>14} {'ratio':>6} | "
          f"{'async mean/p99':>15} {'ratio':>6} | {'s/trial':>7}")
    for n in sizes:
        for f in fanouts:
            t0 = time.perf_counter()
            sync = measure(n, f, args.trials, True, args.seed)
            async_ = measure(n, f, args.trials, False, args.seed, args.eager_push)
            per_trial = (time.perf_counter() - t0) / (2 * args.trials)
            theory = PUSH_PULL.get(n, {}).get(f)
            th = f"{theory[0]:.1f} / {theory[1]}" if theory else "-"
            ms, ma = statistics.mean(sync), statistics.mean(async_)
            rs = f"{ms / theory[0]:.2f}" if theory else "-"
            ra = f"{ma / theory[0]:.2f}" if theory else "-"
            print(f"{n:>5} {f:>2} | {th:>15} | {ms:>6.1f} / {p99(sync):<5} {rs:>6} | "
                  f"{ma:>7.1f} / {p99(async_):<5} {ra:>6} | {per_trial:>7.2f}", flush=True)
    print("ratio = measured mean / theory mean (push-pull, REFERENCE.md); sync rounds are the table's model"
          " (pure push-pull, no eager push), async rounds (nodes out of phase) let news travel several hops per"
          f" round, eager push {'on' if args.eager_push else 'off'}")


if __name__ == "__main__":
    main()
