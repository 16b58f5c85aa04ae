"""Run a sweep: one cluster per (backend, N, fanout), its at-rest window, then its trials."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

from .model import Sweep, Trial
from .output import write_outputs
from .sim import SimBackend
from .summary import summarize


def _settings(sweep: Sweep) -> list[tuple[str, int, int]]:
    """(backend, N, fanout) in the order they run: N ascending, then fanout, sim before docker."""
    sim, docker = sweep.sim_sizes(), sweep.docker_sizes()
    return [(backend, n, fanout)
            for n in sorted(set(sim) | set(docker)) for fanout in sweep.fanouts
            for backend, sizes in (("sim", sim), ("docker", docker)) if n in sizes]


def _backend(backend: str, n: int, fanout: int, seed: int, sweep: Sweep, out: Path,
             cluster_factory: Callable | None):
    """The runner of one setting and the modes it runs; Docker is imported only when asked for."""
    if backend == "sim":
        return SimBackend(n, fanout, sweep.interval, sweep.loss, seed, sweep), sweep.sim_modes
    from .engine import DockerBackend

    if cluster_factory is None:
        from ..cluster import Cluster
        cluster_factory = Cluster
    return DockerBackend(n, fanout, sweep.interval, sweep.loss, seed, sweep, cluster_factory,
                         out / "timeline.jsonl"), ("real",)


def run(sweep: Sweep, out: Path, *, cluster_factory: Callable | None = None,
        on_trial: Callable[[Trial], None] = lambda t: None,
        on_status: Callable[[str], None] = lambda s: None) -> dict:
    """Run the sweep, write trials.csv, summary.json and the plots into ``out``; return the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    trials: list[Trial] = []
    configs: list[dict] = []
    for backend, n, fanout in _settings(sweep):
        seed = sweep.seed * 1_000_003 + n * 101 + fanout
        rng = random.Random(seed)
        on_status(f"{backend} N={n} fanout={fanout}: starting")
        runner, modes = _backend(backend, n, fanout, seed, sweep, out, cluster_factory)
        first = len(trials)
        with runner:
            runner.prepare()
            on_status(f"{backend} N={n} fanout={fanout}: at rest")
            rest = runner.rest()
            for mode in modes:
                for repeat in range(sweep.repeats):
                    on_status(f"{backend}/{mode} N={n} fanout={fanout}: trial {repeat + 1}/{sweep.repeats}")
                    trials.append(runner.trial(mode, repeat, len(trials), rng))
                    on_trial(trials[-1])
        walls = [t.wall for t in trials[first:]]
        configs.append({"backend": backend, "n": n, "fanout": fanout, "interval": sweep.interval,
                        "loss": sweep.loss, "setup_s": round(runner.setup_s, 3),
                        "rest_bytes_per_node_s": round(rest, 1),
                        "trial_wall_s_mean": round(sum(walls) / len(walls), 3)})
    summary = summarize(trials, configs, sweep)
    summary["trials_runtime_s"] = round(time.perf_counter() - started, 2)
    write_outputs(out, trials, summary, started)
    return summary
