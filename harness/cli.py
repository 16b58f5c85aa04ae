"""Command line of the harness: ``python -m harness COMMAND --name CLUSTER ...``.

Every command finds its cluster by Docker labels, so ``up`` in one shell and
``partition`` or ``status`` in another act on the same containers. ``--backend``
(or ``SD_BACKEND``) chooses where nodes run: ``docker`` containers (default) or
``swarm`` services. Errors print one line on stderr (plus container logs where they
explain a failed start) and exit 1.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys

import click
from rich.console import Console
from rich.table import Table

from .checkcli import check
from .cliclusters import BACKEND_CHOICES, DEFAULT_BACKEND, Backend, factory, on, removed_text
from .contract import ManagedCluster
from .dashboard.cli import dashboard
from .errors import ConvergenceTimeout, HarnessError, InvalidPartition, NodeStartError

out = Console()


def parse_groups(args: tuple[str, ...] | list[str]) -> list[list[str]]:
    """Turn ``("n1,n2", "n3,n4")`` into ``[["n1", "n2"], ["n3", "n4"]]`` (blank names are errors)."""
    groups = []
    for arg in args:
        names = [n.strip() for n in arg.split(",")]
        if any(not n for n in names):
            raise InvalidPartition(f"empty node name in group {arg!r}")
        groups.append(names)
    return groups


def _fail(message: str, code: int = 1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def command(fn=None, *, name: str | None = None, backend_option: bool = True):
    """Register ``fn`` as a subcommand with ``--name`` (and ``--backend``); harness errors become one stderr line."""
    if fn is None:
        return functools.partial(command, name=name, backend_option=backend_option)

    @click.option("--name", default="default", show_default=True, help="Cluster name.")
    @click.pass_context
    @functools.wraps(fn)
    def wrapper(ctx, *args, **kwargs):
        kind = kwargs.get("backend_kind", BACKEND_CHOICES[0])
        if "backend_kind" not in inspect.signature(fn).parameters:
            kwargs.pop("backend_kind", None)
        try:
            return ctx.invoke(fn, on(ctx.obj or DEFAULT_BACKEND, kind), *args, **kwargs)
        except (NodeStartError, ConvergenceTimeout) as exc:
            _fail(str(exc))
        except HarnessError as exc:
            _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    if backend_option:
        wrapper = click.option("--backend", "backend_kind", type=click.Choice(BACKEND_CHOICES),
                               default=BACKEND_CHOICES[0], envvar="SD_BACKEND", show_default=True,
                               help="Where nodes run: Docker containers or swarm services.")(wrapper)
    # ignore_unknown_options lets negative numbers through as arguments (skew n1 -5)
    return main.command(name, context_settings={"ignore_unknown_options": True})(wrapper)


@click.group()
def main():
    """Start gossip registry clusters in Docker and inject faults into them."""


def _attach(backend: Backend, name: str) -> ManagedCluster:
    """The cluster called ``name``, found by the backend's ``attach``."""
    return backend["attach"](name)


@command
@click.option("--nodes", "-n", type=click.IntRange(1, 200), default=3, show_default=True)
@click.option("--interval", type=float, help="Seconds between gossip rounds (SD_INTERVAL).")
@click.option("--fanout", type=int, help="Peers per gossip round (SD_FANOUT).")
@click.option("--ttl", type=float, help="Seconds a registration lives unrenewed (SD_TTL).")
@click.option("--image", default="sd-node:latest", show_default=True)
@click.option("--init-swarm", is_flag=True,
              help="With --backend swarm: make this engine a single-node swarm if it is in none (left on down).")
def up(backend: Backend, name, nodes, interval, fanout, ttl, image, init_swarm, backend_kind):
    """Start a cluster of NODES nodes and wait until all answer /health."""
    settings = {"nodes": nodes, "name": name, "image": image, "interval": interval, "fanout": fanout, "ttl": ttl}
    if init_swarm:
        settings["init_swarm"] = True
    cluster: ManagedCluster = backend["create"](**settings)
    cluster.up()
    table = Table(title=f"cluster {name}")
    for col in ("node", "URL", "status"):
        table.add_column(col)
    for row in cluster.status()["nodes"]:
        table.add_row(row["name"], row["url"], row["status"])
    out.print(table)
    first = cluster.url(cluster.nodes[0])
    click.echo(f"try:  curl {first}/registry/list")
    where = f"--name {name}" + (f" --backend {backend_kind}" if backend_kind != BACKEND_CHOICES[0] else "")
    click.echo(f"then: python -m harness status {where}")
    click.echo(f"done: python -m harness down {where}")


@command
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status(backend: Backend, name, as_json):
    """Show each node's state, entry count and digest, and whether they agree."""
    report = _attach(backend, name).status()
    if as_json:
        click.echo(json.dumps(report))
        return
    table = Table(title=f"cluster {name}")
    for col in ("node", "URL", "status", "entries", "digest"):
        table.add_column(col)
    for row in report["nodes"]:
        entries = "-" if row["entries"] is None else str(row["entries"])
        table.add_row(row["name"], row["url"], row["status"], entries, (row["digest"] or "-")[:12])
    out.print(table)
    out.print("converged" if report["converged"] else "[bold]not converged[/bold]")


@command
@click.argument("node")
@click.argument("address")
@click.argument("app_name")
def register(backend: Backend, name, node, address, app_name):
    """Register ADDRESS as an instance of APP_NAME through NODE."""
    click.echo(json.dumps(_attach(backend, name).register(node, address, app_name)))


@command
@click.argument("node")
@click.argument("address")
def deregister(backend: Backend, name, node, address):
    """Deregister ADDRESS through NODE."""
    click.echo(json.dumps(_attach(backend, name).deregister(node, address)))


@command
@click.argument("groups", nargs=-1, required=True)
def partition(backend: Backend, name, groups):
    """Cut groups of nodes (comma-separated names) from each other.

    Example: `partition n1,n2 n3,n4,n5`.

    Nodes named in no group form one more group together.
    """
    full = _attach(backend, name).partition(parse_groups(groups))
    click.echo("partitioned: " + " | ".join(",".join(g) for g in full))


@command
@click.argument("node")
def isolate(backend: Backend, name, node):
    """Cut NODE from every other node."""
    _attach(backend, name).isolate(node)
    click.echo(f"isolated {node}")


@command
@click.argument("src")
@click.argument("dst")
def one_way(backend: Backend, name, src, dst):
    """Drop connections SRC opens towards DST (DST can still reach SRC)."""
    _attach(backend, name).partition_one_way(src, dst)
    click.echo(f"cut {src} -> {dst}")


@command
def heal(backend: Backend, name):
    """Remove every partition, loss and delay."""
    _attach(backend, name).heal()
    click.echo("healed")


_PROCESS_HELP = {
    "kill": "SIGKILL NODE (its data is kept).",
    "stop": "Stop NODE gracefully.",
    "start": "Start a stopped or killed NODE and wait for /health.",
    "restart": "Restart NODE and wait for /health.",
    "pause": "Freeze NODE (peers see timeouts, sockets stay open).",
    "unpause": "Thaw a paused NODE.",
}


def _process_command(action: str) -> None:
    """Register the subcommand ``action NODE`` calling ``Cluster.<action>(node)``."""

    def run(backend: Backend, name, node):
        getattr(_attach(backend, name), action)(node)
        click.echo(f"{action} {node}: done")

    run.__name__ = action
    run.__doc__ = _PROCESS_HELP[action]
    command(click.argument("node")(run))


for _action in _PROCESS_HELP:
    _process_command(_action)


@command
@click.argument("node")
@click.argument("percent", type=click.FloatRange(0, 100))
def loss(backend: Backend, name, node, percent):
    """Drop PERCENT % of the packets NODE receives (0 removes the loss)."""
    _attach(backend, name).loss(node, percent)
    click.echo(f"loss {node}: {percent:g}%")


@command
@click.argument("node")
@click.argument("ms", type=float)
def delay(backend: Backend, name, node, ms):
    """Delay NODE's outgoing packets by MS milliseconds (needs tc netem)."""
    _attach(backend, name).delay(node, ms)
    click.echo(f"delay {node}: {ms:g} ms")


@command
@click.argument("node")
@click.argument("seconds", type=float)
def skew(backend: Backend, name, node, seconds):
    """Shift NODE's clock by SECONDS (negative allowed)."""
    _attach(backend, name).skew(node, seconds)
    click.echo(f"skew {node}: {seconds:+g} s")


@command
@click.option("--timeout", type=float, default=30.0, show_default=True)
def wait(backend: Backend, name, timeout):
    """Wait until all running nodes agree on one digest."""
    report = _attach(backend, name).wait_converged(timeout=timeout)
    digest, entries = next(iter(report.digests.values()))
    click.echo(f"converged: {entries} entries, digest {digest[:12]}")


@command
def down(backend: Backend, name):
    """Remove the cluster's containers, volumes and network."""
    click.echo(removed_text(_attach(backend, name).down()))


@command(name="gc", backend_option=False)
@click.option("--all", "all_clusters", is_flag=True, help="Every harness cluster, not just --name.")
def gc_(backend: Backend, name, all_clusters):
    """Remove leftovers of crashed runs (swarm services, containers, volumes, networks labelled sd.harness=1)."""
    click.echo(removed_text(backend["gc"](cluster=None if all_clusters else name)))


@main.command("tune-host")
@click.option("--nodes", "-n", type=click.IntRange(1, 1000), required=True,
              help="Size of the cluster to make room for (running harness clusters are added).")
def tune_host(nodes):
    """Raise the host's ARP table limit if an N-node cluster would overflow it (needs root).

    The kernel shares one neighbour table among all containers; see harness/hostlimits.py.
    Prints nothing when the limit already fits.
    """
    from . import hostlimits  # noqa: PLC0415 - only this command needs them
    from .backends import engine  # noqa: PLC0415

    try:
        client = engine.connect()
        others = engine.running_cluster_sizes(client) if engine.is_local(client) else None
    except HarnessError:
        others = []
    if others is None:  # a remote engine: this host's limits do not apply
        return
    try:
        hostlimits.check_neighbour_table(nodes, others)
        return
    except hostlimits.HostLimitError as exc:
        problem = str(exc)
    try:
        changes = hostlimits.tune(nodes, others)
    except OSError as exc:  # not root, or /proc/sys read-only (inside a container)
        _fail(f"{problem} ({exc.strerror or exc})")
    for change in changes:
        click.echo(f"tune-host: {change} (room for a {nodes}-node cluster)")


def _int_list(ctx, param, value):
    """Parse ``"5,10,20"`` into ``(5, 10, 20)``."""
    if value is None:
        return None
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None
    if not items:
        raise click.BadParameter("give at least one value")
    return items


@command(backend_option=False)
@click.option("--nodes", "nodes", default="5,10,20,40", show_default=True, callback=_int_list,
              help="Cluster sizes N, comma-separated.")
@click.option("--fanout", "fanouts", default="3", show_default=True, callback=_int_list,
              help="Fanouts, comma-separated.")
@click.option("--interval", type=click.FloatRange(0.01), default=0.2, show_default=True,
              help="Seconds between gossip rounds.")
@click.option("--loss", type=click.FloatRange(0, 99), default=0.0, show_default=True,
              help="Percent of messages (sim) or packets (docker, on every node) dropped.")
@click.option("--fault", type=click.Choice(["none", "partition-heal", "kill-restart"]), default="none",
              show_default=True, help="Fault around each registration; undone after --fault-rounds rounds.")
@click.option("--fault-rounds", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("--repeats", type=click.IntRange(1, 1000), default=3, show_default=True, help="Trials per setting.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--backend", "backend_", type=click.Choice(["sim", "docker", "swarm", "both"]), default="sim",
              show_default=True, help="swarm: real nodes as swarm services (--backend docker --docker-backend swarm).")
@click.option("--sim-mode", type=click.Choice(["async", "sync", "both"]), default="async", show_default=True,
              help="async: nodes out of phase (like real ones); sync: the theory's synchronous rounds.")
@click.option("--docker-nodes", callback=_int_list,
              help="N values for Docker (default: those of --nodes up to 40).")
@click.option("--docker-backend", type=click.Choice(BACKEND_CHOICES), default=BACKEND_CHOICES[0],
              show_default=True, help="Where the docker trials' nodes run: containers or swarm services.")
@click.option("--init-swarm", is_flag=True, help="With --docker-backend swarm: make a swarm if there is none.")
@click.option("--image", default="sd-node:latest", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Run folder (default runs/<timestamp>).")
def experiment(backend, name, nodes, fanouts, interval, loss, fault, fault_rounds, repeats, seed, backend_,
               sim_mode, docker_nodes, docker_backend, init_swarm, image, out_dir):
    """Measure rounds and seconds until a registration reaches every node, against theory.

    Writes trials.csv, summary.json and PNG plots into the run folder. Docker clusters
    are named exp-NAME-n<N>-f<fanout> and removed afterwards; with ``--docker-backend
    swarm`` they are swarm services (rows still say "docker": real nodes, not simulated).
    """
    import time as _time
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import experiment as exp

    if backend_ == "swarm":
        backend_, docker_backend = "docker", "swarm"
    sweep = exp.Sweep(
        nodes=nodes, fanouts=fanouts, interval=interval, loss=loss, fault=fault, fault_rounds=fault_rounds,
        repeats=repeats, seed=seed, image=image, name=f"exp-{name}",
        backends=("sim", "docker") if backend_ == "both" else (backend_,),
        sim_modes=("async", "sync") if sim_mode == "both" else (sim_mode,),
        docker_nodes=docker_nodes,
    )
    folder = Path(out_dir) if out_dir else Path("runs") / _time.strftime("%Y%m%d-%H%M%S")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task("experiment", total=sweep.total_trials())
        summary = exp.run(
            sweep, folder, cluster_factory=factory(backend, docker_backend, init_swarm),
            on_trial=lambda t: progress.advance(task),
            on_status=lambda s: progress.update(task, description=s),
        )
    report = out if out.is_terminal else Console(width=120)  # a log file gets whole tables, not 80 columns
    report.print(exp.experiment_table(summary))
    if summary["agreement"]:
        report.print(exp.agreement_table(summary["agreement"]))
    click.echo(f"run folder: {folder} (trials.csv, summary.json, dissemination.png, rounds_vs_n.png, "
               f"bytes_vs_n.png); {summary['runtime_s']:.1f} s")


main.add_command(dashboard)
main.add_command(check)
