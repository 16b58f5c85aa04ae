"""What a person looks at after a check: results.json, check.png, timeline.html and a terminal summary.

``check.png`` (matplotlib) stacks three panels on one time axis: the faults as
intervals, each operation's latency coloured by outcome, and each acknowledged
registration's delay until every node listed it; fault intervals are shaded across all.
``timeline.html`` is one self-contained page in the spirit of Jepsen's timeline: a row
per client, a bar per operation from invoke to complete coloured by outcome (hover for
details), fault intervals shaded.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .model import INDETERMINATE, OK, REFUSED, Settings

COLOURS = {OK: "#2e9d4a", REFUSED: "#d1342f", INDETERMINATE: "#f0a01e"}
FAULT_COLOUR = "#6c7ae0"


def write(folder: Path, settings: Settings, records: Sequence[Mapping[str, Any]], results: Mapping[str, Any]) -> None:
    """Write results.json, check.png and timeline.html into ``folder``."""
    (folder / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    plot(folder / "check.png", records, results)
    (folder / "timeline.html").write_text(timeline_html(settings, records, results), encoding="utf-8")


def fault_intervals(records: Sequence[Mapping[str, Any]]) -> list[tuple[float, float, str]]:
    """(start, end, label) of every applied fault, from its start and end events."""
    starts = {r["id"]: r for r in records if r.get("kind") == "fault" and r["event"] == "start"}
    # a fault counts until its undo took effect
    ends = {r["id"]: r.get("effective", r["t"]) for r in records if r.get("kind") == "fault" and r["event"] == "end"}
    final = max((r["t"] for r in records if "t" in r), default=0.0)
    return [(s["t"], ends.get(i, final), _label(s)) for i, s in starts.items()]


def _label(fault: Mapping[str, Any]) -> str:
    target = fault.get("node") or fault.get("bridge") or (f"{fault['src']}->{fault['dst']}" if "src" in fault else "")
    return f"{fault['fault']} {target}".strip()


def _ops(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in records if r.get("kind") == "op"]


def plot(path: Path, records: Sequence[Mapping[str, Any]], results: Mapping[str, Any]) -> None:
    """Faults, operation latency and visibility delay on one time axis."""
    import matplotlib  # noqa: PLC0415 - plotting is loaded only when a report is written

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    faults, ops = fault_intervals(records), _ops(records)
    fig, (ax_f, ax_l, ax_v) = plt.subplots(3, 1, sharex=True, figsize=(11, 7.5),
                                           gridspec_kw={"height_ratios": [1.2, 2, 2]})
    for row, (start, end, label) in enumerate(faults):
        ax_f.barh(row % 4, end - start, left=start, color=FAULT_COLOUR, alpha=0.8)
        ax_f.text(start, row % 4, " " + label, va="center", fontsize=7, color="white", clip_on=True)
    ax_f.set_yticks([])
    ax_f.set_title(f"check: {results['backend']}, N={results['nodes']}, seed {results['seed']} - "
                   + ("passed" if results["passed"] else "FAILED: " + "; ".join(results["violations"])))
    ax_f.set_ylabel("faults")
    for outcome, colour in COLOURS.items():
        mine = [r for r in ops if r["outcome"] == outcome]
        ax_l.scatter([r["invoke"] for r in mine], [1000 * (r["complete"] - r["invoke"]) for r in mine], s=6,
                     color=colour, label=f"{outcome} ({len(mine)})")
    ax_l.set_ylabel("operation latency (ms)")
    ax_l.legend(loc="upper right", fontsize=8)
    ax_v.scatter(*_visibility_points(records), s=6, color="#333333")
    ax_v.set_ylabel("ack to visible on all (s)")
    ax_v.set_xlabel("seconds since start")
    for ax in (ax_f, ax_l, ax_v):
        for start, end, _ in faults:
            ax.axvspan(start, end, color=FAULT_COLOUR, alpha=0.12, lw=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _visibility_points(records: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    """(ack instant, delay) of each acknowledged registration that became visible everywhere."""
    from .checker import visibility_points  # noqa: PLC0415 - keeps the checker's imports out of reports

    points = visibility_points(records)
    return [p[0] for p in points], [p[1] for p in points]


def timeline_html(settings: Settings, records: Sequence[Mapping[str, Any]], results: Mapping[str, Any]) -> str:
    """A self-contained page: one row per client, operations as bars, faults shaded."""
    ops = _ops(records)
    end = max([settings.duration] + [r["complete"] for r in ops]) or 1.0
    width, row_h, left = 1400, 22, 70
    clients = sorted({r["client"] for r in ops})
    height = 40 + row_h * len(clients)

    def x(t: float) -> float:
        return left + (width - left - 10) * t / end

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">']
    for start, stop, label in fault_intervals(records):
        parts.append(f'<rect x="{x(start):.1f}" y="20" width="{max(1.0, x(stop) - x(start)):.1f}" '
                     f'height="{height - 20}" fill="{FAULT_COLOUR}" opacity="0.15"><title>{html.escape(label)} '
                     f'{start:.2f}-{stop:.2f}s</title></rect>')
        parts.append(f'<text x="{x(start) + 2:.1f}" y="14" font-size="10">{html.escape(label)}</text>')
    for row, client in enumerate(clients):
        y = 24 + row * row_h
        parts.append(f'<text x="4" y="{y + 13}" font-size="11">client {client}</text>')
        for r in (r for r in ops if r["client"] == client):
            tip = (f"{r['op']} {r['address']} at {r['node']}: {r['outcome']} v={r['version']} "
                   f"{r['invoke']:.3f}-{r['complete']:.3f}s" + (f" ({r['error']})" if r["error"] else ""))
            bar = max(2.0, x(r["complete"]) - x(r["invoke"]))
            parts.append(f'<rect x="{x(r["invoke"]):.1f}" y="{y}" width="{bar:.1f}" height="{row_h - 6}" '
                         f'fill="{COLOURS[r["outcome"]]}"><title>{html.escape(tip)}</title></rect>')
    parts.append("</svg>")
    summary = html.escape(json.dumps({k: results[k] for k in SUMMARY_KEYS if k in results}, indent=1))
    legend = " ".join(f'<span style="background:{c};color:white;padding:2px 6px">{o}</span>'
                      for o, c in COLOURS.items())
    return ("<!doctype html><html><head><meta charset='utf-8'><title>check timeline</title></head><body>"
            f"<h2>check: {html.escape(results['backend'])}, N={results['nodes']}, seed {results['seed']}: "
            f"{'passed' if results['passed'] else 'FAILED'}</h2><p>{legend} "
            f'<span style="background:{FAULT_COLOUR};opacity:0.4;padding:2px 6px">fault</span> '
            f"(hover a bar or a shaded interval for details; time in seconds, 0 to {end:.1f})</p>"
            f"<div style='overflow-x:auto'>{''.join(parts)}</div><pre>{summary}</pre></body></html>\n")


SUMMARY_KEYS = ("passed", "violations", "operations", "acknowledged", "refused", "indeterminate", "lost",
                "resurrected", "converged", "visible_median_s", "visible_p99_s", "visible_max_s",
                "stale_read_max_s", "faults", "faults_skipped", "faults_failed", "seed")


def summary(results: Mapping[str, Any], folder: Path):
    """A rich table of the verdict and the figures."""
    from rich.table import Table  # noqa: PLC0415

    verdict = "[green]passed[/]" if results["passed"] else "[red]FAILED[/]"
    table = Table(title=f"check {verdict}: {results['backend']}, N={results['nodes']}, "
                        f"{results['duration_s']:g} s, seed {results['seed']}")
    table.add_column("what")
    table.add_column("value", justify="right")

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)

    counts = f"{results['acknowledged']} / {results['refused']} / {results['indeterminate']}"
    rows = [("operations (ok / refused / indeterminate)", f"{results['operations']} ({counts})"),
            ("lost acknowledged writes (of addresses judged)",
             f"{results['lost']} (of {results['loss_judged_addresses']})"),
            ("resurrected", fmt(results["resurrected"])),
            ("converged", fmt(results["converged"])), ("converged after heal (s)", fmt(results["converge_s"])),
            ("ack to visible on all, median / p99 / max (s)",
             " / ".join(fmt(results[k]) for k in ("visible_median_s", "visible_p99_s", "visible_max_s"))),
            ("stale-read window max (s)", fmt(results["stale_read_max_s"])),
            ("faults applied", ", ".join(f"{k} {v}" for k, v in results["faults"].items()) or "none"),
            ("faults skipped", ", ".join(f"{k} {v}" for k, v in results["faults_skipped"].items()) or "none"),
            ("outputs", str(folder))]
    for what, value in rows:
        table.add_row(what, value)
    return table
