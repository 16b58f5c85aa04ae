"""``python -m harness dashboard``: serve the live page of a cluster on 127.0.0.1."""

from __future__ import annotations

import logging

import click

from ..cliclusters import DEFAULT_BACKEND, on
from ..errors import HarnessError


@click.command("dashboard")
@click.option("--name", default="default", show_default=True, help="Cluster name (docker, swarm).")
@click.option("--backend", "kind", type=click.Choice(["docker", "swarm", "sim"]), default="docker",
              envvar="SD_BACKEND", show_default=True,
              help="Where the nodes run; sim hosts a simulated cluster in this process, stepped in real time.")
@click.option("--nodes", "-n", type=click.IntRange(1, 500), default=20, show_default=True,
              help="Nodes of the simulated cluster (sim only).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulation (sim only).")
@click.option("--port", type=click.IntRange(0, 65535), default=8089, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.pass_context
def dashboard(ctx, name, kind, nodes, seed, port):
    """Serve a live page of a running cluster: convergence, faults, dissemination, controls."""
    from .hub import Hub  # noqa: PLC0415 - Flask and the server load only for this command
    from .server import serve  # noqa: PLC0415
    from .sources import ClusterSource, SimSource  # noqa: PLC0415

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    if kind == "sim":
        logging.getLogger("node").setLevel(logging.ERROR)  # the simulated nodes' suspicions are drawn, not logged
    try:
        source: SimSource | ClusterSource
        if kind == "sim":
            source = SimSource(nodes, seed=seed)
        else:
            source = ClusterSource(on(ctx.obj or DEFAULT_BACKEND, kind)["attach"](name))
    except HarnessError as exc:
        raise click.ClickException(str(exc).splitlines()[0]) from None
    hub = Hub(source).start()
    try:
        serve(hub, port, ready=lambda url: click.echo(f"dashboard of {source.name} ({kind}): {url}", err=True))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot serve on 127.0.0.1:{port}: {exc}") from None
    finally:
        hub.stop()
