"""What a sweep leaves behind: trials.csv, summary.json and the plots, and the terminal tables."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.table import Table

from .model import CSV_COLUMNS, Trial


def write_outputs(out: Path, trials: list[Trial], summary: dict, started: float | None = None) -> dict[str, Path]:
    """Write trials.csv, the PNG plots and summary.json (with the total runtime); return their paths."""
    from .. import plots

    paths = {"csv": out / "trials.csv", "summary": out / "summary.json"}
    write_csv(trials, paths["csv"])
    paths.update(plots.write_all(trials, summary, out))
    if started is not None:
        summary["runtime_s"] = round(time.perf_counter() - started, 2)
    paths["summary"].write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return paths


def write_csv(trials: Sequence[Trial], path: Path) -> None:
    """One row per trial and node (columns: CSV_COLUMNS)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for i, t in enumerate(trials):
            w.writerows(t.rows(i))


def experiment_table(summary: dict) -> Table:
    """The terminal summary of an experiment: one row per backend, mode and setting."""
    table = Table(title="rounds until every node holds a new registration", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("backend", "N", "f", "ok", "rounds", "p99", "secs", "theory", "ratio", "Serf",
                "B/n/s rest", "B/n/s trial"):
        table.add_column(col, justify="left" if col == "backend" else "right", no_wrap=True)
    fmt = lambda v, spec="": "-" if v is None else format(v, spec)  # noqa: E731
    for g in summary["groups"]:
        ref = g["theory"]
        ok = g["within_target"]
        ratio = fmt(g["ratio_to_push_pull"], ".2f") + ("" if ok is None else ("" if ok else "[red]![/red]"))
        pp = fmt(ref["push_pull_mean"], ".2f") + ("" if ref["push_pull_exact"] else "~")
        label = g["backend"] + (f"/{g['mode']}" if g["backend"] == "sim" else "")
        label += (f" loss {g['loss']:g}%" if g["loss"] else "") + (f" {g['fault']}" if g["fault"] != "none" else "")
        table.add_row(label, str(g["n"]), str(g["fanout"]), f"{g['complete']}/{g['trials']}",
                      fmt(g["rounds_mean"], ".2f"), fmt(g["rounds_p99"], ".1f"), fmt(g["seconds_mean"], ".2f"),
                      pp, ratio, fmt(ref["serf_rounds"]),
                      fmt(g["bytes_per_node_s_rest"], ".0f"), fmt(g["bytes_per_node_s_trial"], ".0f"))
    table.caption = ("theory: push-pull mean of REFERENCE.md (~ interpolated in ln N); ratio = rounds / theory, "
                     "! = over the 1.25 target; Serf: logistic model, 99.99 % informed; B/n/s: gossip bytes "
                     "per node per second at rest and during trials")
    return table


def agreement_table(rows: list[dict]) -> Table:
    """Docker against sim at the same settings: mean rounds, ratio, agreement (< 25 %)."""
    table = Table(title="sim vs docker (mean rounds to all)", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("N", "f", "docker", "sim", "sim mode", "docker/sim", "diff", "agree", "rounds/s", "run", "diff run"):
        table.add_column(col, justify="right")
    for a in rows:
        fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
        table.add_row(str(a["n"]), str(a["fanout"]), fmt(a["docker_rounds_mean"], ".2f"),
                      fmt(a["sim_rounds_mean"], ".2f"), a["sim_mode"], fmt(a["ratio"], ".2f"), fmt(a["diff"], ".0%"),
                      "yes" if a["agree"] else "[red]no[/red]", fmt(a.get("docker_round_rate"), ".1f"),
                      fmt(a.get("docker_rounds_run_mean"), ".2f"), fmt(a.get("diff_run"), ".0%"))
    table.caption = ("rounds/s: gossip rounds a Docker node really ran per second (1 / interval when none "
                     "overran); run: seconds to all x rounds/s, against the sim's seconds / interval")
    return table
