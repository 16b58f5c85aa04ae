"""Running one check into a folder and judging it, on the backend its settings name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import checker, report
from .history import History
from .model import Settings
from .simrun import run_sim


def run(settings: Settings, folder: Path) -> dict[str, Any]:
    """Run one check into ``folder`` (history.jsonl, results.json, check.png, timeline.html); return the results."""
    folder.mkdir(parents=True, exist_ok=True)
    history = History(folder / "history.jsonl")
    try:
        if settings.backend == "sim":
            outcome = run_sim(settings, history)
        else:
            from .docker import run_docker  # noqa: PLC0415 - Docker is loaded only for Docker runs

            outcome = run_docker(settings, history)
    finally:
        history.close()
    results = judge(settings, history.records, outcome)
    report.write(folder, settings, history.records, results)
    return results


def judge(settings: Settings, records: list[dict[str, Any]], outcome: dict[str, Any]) -> dict[str, Any]:
    """The checker's verdict on a finished run, with the run's own figures beside it."""
    final = outcome["final"]
    found = checker.check(records, final["views"], final["digests"], final["t"], settings.ttl)
    counts = outcome["faults"]
    results = {
        **found, "faults": counts["applied"], "faults_skipped": counts["skipped"], "faults_failed": counts["failed"],
        "faults_unsupported": counts["unsupported"], "seed": settings.seed, "backend": settings.backend,
        "nodes": settings.nodes, "duration_s": settings.duration, "rate": settings.rate,
        "converge_s": final["converge_s"], "visibility_measured_by": "poller",
        "poll_every_s": settings.interval if settings.backend == "sim" else settings.poll_s,
        "schedule": outcome["schedule"], "settings": settings.to_json(),
    }
    results["violations"] = checker.violations(results)
    results["passed"] = not results["violations"]
    return results
