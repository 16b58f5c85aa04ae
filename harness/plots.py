"""PNG plots of a convergence experiment (matplotlib, Agg backend, no display needed).

- ``dissemination.png``: fraction of nodes informed against rounds and against seconds,
  averaged over each group's trials; fault windows shaded.
- ``rounds_vs_n.png``: mean rounds to all nodes against N (log axis), p99 as error bars,
  with the push-pull table, log3 N and Serf's logistic model overlaid.
- ``bytes_vs_n.png``: gossip bytes per node per second against N, at rest and during trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import theory  # noqa: E402

DPI = 90
# Pairs (fault applied, fault undone) of trial fault events; the shaded window runs between them.
FAULT_WINDOWS = (("partition", "healed"), ("partition", "heal"), ("kill", "started"), ("kill", "start"))
STYLE = {("sim", "async"): "-", ("sim", "sync"): ":", ("docker", "real"): "--"}


def write_all(trials: Sequence, summary: dict, out: Path) -> dict[str, Path]:
    """Write the three plots into ``out``; return their paths."""
    out = Path(out)
    paths = {
        "dissemination": out / "dissemination.png",
        "rounds_vs_n": out / "rounds_vs_n.png",
        "bytes_vs_n": out / "bytes_vs_n.png",
    }
    dissemination(trials, paths["dissemination"])
    rounds_vs_n(summary["groups"], paths["rounds_vs_n"])
    bytes_vs_n(summary["groups"], paths["bytes_vs_n"])
    return paths


def _label(key: tuple) -> str:
    backend, mode, n, fanout, _interval, loss, fault = key
    text = f"{backend}{'/' + mode if backend == 'sim' else ''} N={n} f={fanout}"
    if loss:
        text += f" loss={loss:g}%"
    return text + (f" {fault}" if fault != "none" else "")


def fault_windows(faults: Sequence[dict], unit: str = "t") -> list[tuple[float, float]]:
    """Return (start, end) windows of a trial's faults in seconds (``t``) or rounds (``round``)."""
    by_event: dict[str, float] = {}
    for f in faults:
        by_event.setdefault(f["event"], f[unit])
    out = []
    for start, end in FAULT_WINDOWS:
        if start in by_event and end in by_event:
            out.append((by_event[start], by_event[end]))
            by_event.pop(start)
    return out


def informed_curve(trials: Sequence, unit: str, grid: Sequence[float]) -> list[float]:
    """Mean fraction of nodes informed at each grid point (rounds or seconds) over ``trials``."""
    out = []
    for x in grid:
        fractions = []
        for t in trials:
            values = (t.rounds if unit == "round" else t.seconds).values()
            fractions.append(sum(1 for v in values if v is not None and v <= x + 1e-9) / t.n)
        out.append(sum(fractions) / len(fractions))
    return out


def dissemination(trials: Sequence, path: Path) -> None:
    """Fraction informed against rounds (left) and seconds (right), one curve per group."""
    groups: dict[tuple, list] = {}
    for t in trials:
        groups.setdefault(t.key(), []).append(t)
    fig, (ax_r, ax_s) = plt.subplots(1, 2, figsize=(11, 4.2))
    sizes = sorted({k[2] for k in groups})
    cmap = plt.get_cmap("viridis")
    colour = {n: cmap(i / max(1, len(sizes) - 1) * 0.9) for i, n in enumerate(sizes)}
    shaded = False
    for key, ts in sorted(groups.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        rmax = max((v for t in ts for v in t.rounds.values() if v is not None), default=0)
        grid_r = list(range(0, rmax + 2))
        style = STYLE.get((key[0], key[1]), "-")
        ax_r.step(grid_r, informed_curve(ts, "round", grid_r), where="post", linestyle=style,
                  color=colour[key[2]], label=_label(key))
        smax = max((v for t in ts for v in t.seconds.values() if v is not None), default=0.0)
        grid_s = [smax * 1.05 * i / 200 for i in range(201)]
        ax_s.plot(grid_s, informed_curve(ts, "seconds", grid_s), linestyle=style, color=colour[key[2]])
        for t in ts:
            for a, b in fault_windows(t.faults, "t"):
                ax_s.axvspan(a, b, color="tab:red", alpha=0.06, label=None if shaded else "fault window")
                shaded = True
            for a, b in fault_windows(t.faults, "round"):
                ax_r.axvspan(a, b, color="tab:red", alpha=0.06)
    ax_r.set(xlabel="rounds after the registration", ylabel="fraction of nodes informed", ylim=(0, 1.02),
             title="dissemination by round")
    ax_s.set(xlabel="seconds after the registration", ylim=(0, 1.02), title="dissemination by time")
    for ax in (ax_r, ax_s):
        ax.grid(alpha=0.3)
    ax_r.legend(fontsize=7, loc="lower right")
    if shaded:
        ax_s.legend(fontsize=7, loc="lower right")
    _save(fig, path)


def rounds_vs_n(groups: Sequence[dict], path: Path) -> None:
    """Mean rounds to all (p99 as upper error bar) against N, theory overlaid."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    series: dict[tuple, list[dict]] = {}
    for g in groups:
        if g["rounds_mean"] is not None:
            series.setdefault((g["backend"], g["mode"], g["fanout"], g["loss"], g["fault"]), []).append(g)
    markers = {"sim": "o", "docker": "s"}
    for (backend, mode, fanout, loss, fault), gs in sorted(series.items()):
        gs = sorted(gs, key=lambda g: g["n"])
        ns = [g["n"] for g in gs]
        mean = [g["rounds_mean"] for g in gs]
        up = [max(0.0, g["rounds_p99"] - g["rounds_mean"]) for g in gs]
        label = f"{backend}{'/' + mode if backend == 'sim' else ''} f={fanout}"
        label += f" loss={loss:g}%" if loss else ""
        label += f" {fault}" if fault != "none" else ""
        ax.errorbar(ns, mean, yerr=[[0] * len(up), up], marker=markers.get(backend, "o"), capsize=3,
                    linestyle=STYLE.get((backend, mode), "-"), label=label)
    all_n = sorted({g["n"] for g in groups}) or [5, 1000]
    lo, hi = min(all_n + [5]), max(all_n + [1000])
    span = [lo * (hi / lo) ** (i / 60) for i in range(61)]
    fanouts = sorted({g["fanout"] for g in groups}) or [3]
    losses = sorted({g["loss"] for g in groups}) or [0.0]
    for f in fanouts:
        rows = sorted(theory.PUSH_PULL)
        ax.plot(rows, [theory.PUSH_PULL[n][f][0] for n in rows], "kx:", alpha=0.8,
                label=f"push-pull table f={f} (mean)")
        for loss in losses:
            label = f"Serf logistic 99.99% f={f}" + (f" loss={loss:g}%" if loss else "")
            ax.plot(span, [math.ceil(theory.serf_rounds(n, f, loss / 100)) for n in span], color="grey",
                    linestyle="-.", alpha=0.7, label=label)
    ax.plot(span, [theory.log3(n) for n in span], color="tab:brown", alpha=0.6, label="log3 N")
    ax.set_xscale("log")
    ax.set(xlabel="N (nodes, log scale)", ylabel="rounds until every node holds it",
           title="rounds to all nodes vs N (bars: p99)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    _save(fig, path)


def bytes_vs_n(groups: Sequence[dict], path: Path) -> None:
    """Bytes per node per second against N, at rest and during trials, per backend."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for backend in sorted({g["backend"] for g in groups}):
        gs = sorted((g for g in groups if g["backend"] == backend), key=lambda g: g["n"])
        by_n: dict[int, dict] = {}
        for g in gs:  # one point per N (several modes share a cluster's at-rest window)
            by_n.setdefault(g["n"], g)
        ns = sorted(by_n)
        rest = [by_n[n]["bytes_per_node_s_rest"] for n in ns]
        trial = [by_n[n]["bytes_per_node_s_trial"] for n in ns]
        marker = "s" if backend == "docker" else "o"
        if any(v for v in rest):
            ax.plot(ns, rest, marker=marker, linestyle="-", label=f"{backend} at rest")
        if any(v for v in trial):
            ax.plot(ns, trial, marker=marker, linestyle="--", label=f"{backend} during trials")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="N (nodes, log scale)", ylabel="gossip bytes sent per node per second",
           title="gossip traffic per node vs N")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    """Write the figure as PNG and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
