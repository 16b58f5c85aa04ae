"""``python -m harness check``: a seeded workload under a seeded nemesis, judged like Jepsen.

Exit status: 0 when the check passed, 1 when it found a violation (an acknowledged
write lost, a deregistered instance resurrected, nodes not converged), 2 when the run
itself could not be done (Docker unreachable, image missing...).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import click
from rich.console import Console

from .check.model import FAULT_KINDS, Settings
from .errors import HarnessError


def _kinds(ctx, param, value: str) -> tuple[str, ...]:
    """Parse ``"kill,halves"`` (or ``all``) into known fault kinds."""
    if value.strip() in ("all", ""):
        return FAULT_KINDS if value.strip() == "all" else ()
    kinds = tuple(k.strip() for k in value.split(",") if k.strip())
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown:
        raise click.BadParameter(f"unknown fault kinds {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}")
    return kinds


@click.command("check")
@click.option("--backend", type=click.Choice(["sim", "docker", "swarm"]), default="sim", show_default=True,
              help="sim: in-process nodes on a virtual clock (replayable); docker/swarm: real nodes.")
@click.option("--nodes", type=click.IntRange(2, 200), default=5, show_default=True, help="Cluster size N.")
@click.option("--duration", type=click.FloatRange(1, 3600), default=30.0, show_default=True,
              help="Seconds of workload and faults.")
@click.option("--rate", type=click.FloatRange(0.1, 200), default=10.0, show_default=True,
              help="Client operations per second, all clients together.")
@click.option("--seed", type=int, default=0, show_default=True, help="Draws the workload and the fault schedule.")
@click.option("--faults", "faults", default="all", show_default=True, callback=_kinds,
              help=f"Comma-separated fault kinds ({', '.join(FAULT_KINDS)}), 'all', or '' for none.")
@click.option("--interval", type=click.FloatRange(0.05, 5), default=0.2, show_default=True,
              help="Seconds between gossip rounds.")
@click.option("--ttl", type=click.FloatRange(1, 600), default=10.0, show_default=True,
              help="Lease of a registration (grace is the same); clients renew every third of it.")
@click.option("--fault-seconds", type=click.FloatRange(0.5, 600),
              help="How long each fault stays applied [default: 4 in the simulator, 10 on Docker, where applying "
                   "and probing a fault takes seconds].")
@click.option("--quiet-seconds", type=click.FloatRange(0, 600),
              help="Healthy seconds between two faults [default: 2 in the simulator, 5 on Docker].")
@click.option("--name", default="check", show_default=True, help="Cluster name (docker/swarm).")
@click.option("--image", default="sd-node:latest", show_default=True, envvar="SD_IMAGE", help="Node image.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder (default runs/check-<timestamp>).")
def check(backend, nodes, duration, rate, seed, faults, interval, ttl, fault_seconds, quiet_seconds, name, image,
          out_dir):
    """Run clients and faults against a cluster, then check: nothing acknowledged lost, nothing resurrected, converged.

    Writes history.jsonl, results.json, check.png, timeline.html and check.log into the run folder.
    """
    from . import check as checking  # noqa: PLC0415 - matplotlib and the runners load only when checking

    real = backend != "sim"
    fault_s = fault_seconds if fault_seconds is not None else 10.0 if real else 4.0
    quiet_s = quiet_seconds if quiet_seconds is not None else 5.0 if real else 2.0
    settings = Settings(backend=backend, nodes=nodes, duration=duration, rate=rate, seed=seed, faults=faults,
                        interval=interval, ttl=ttl, grace=ttl, name=name, image=image, fault_s=fault_s, quiet_s=quiet_s)
    folder = Path(out_dir) if out_dir else Path("runs") / time.strftime("check-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    # Node and harness warnings (suspicions, refutations, failed polls) go to the run folder, not the terminal.
    logging.basicConfig(filename=folder / "check.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console = Console()
    try:
        with console.status(f"checking on {backend}: N={nodes}, {duration:g} s, seed {seed}"):
            results = checking.run(settings, folder)
    except HarnessError as exc:
        click.echo(f"error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    console.print(checking.report.summary(results, folder))
    for problem in results["violations"]:
        console.print(f"[red]violation:[/] {problem}")
    sys.exit(0 if results["passed"] else 1)
