"""Where the command line gets its clusters: made, found and collected on a chosen backend.

The commands reach clusters only through a ``Backend`` mapping of three functions
(``create``, ``attach``, ``gc``), so tests hand the CLI fakes instead (click's ``obj``).
The Docker SDK is imported only when one of them runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from .contract import ManagedCluster
from .errors import HarnessError


def _create(backend: str = "docker", init_swarm: bool = False, **settings: Any) -> ManagedCluster:
    """A cluster described by ``settings`` on ``backend`` (not started); ``init_swarm`` may make a swarm."""
    from .cluster import Cluster  # noqa: PLC0415 - Docker is loaded only by commands that need it

    if init_swarm and backend != "swarm":
        raise HarnessError("--init-swarm needs --backend swarm")
    return Cluster(backend=backend, init_swarm=init_swarm, **settings)


def _attach_docker(name: str, backend: str = "docker") -> ManagedCluster:
    """The running cluster called ``name`` on ``backend``."""
    from .cluster import Cluster  # noqa: PLC0415

    return Cluster.attach(name, backend=backend)


def _gc(cluster: str | None = None) -> dict:
    """Remove harness leftovers (of one cluster, or all): swarm services first, when in a swarm, then containers."""
    from .backends.swarm import SwarmBackend  # noqa: PLC0415
    from .cluster import connect, gc  # noqa: PLC0415

    client = connect()
    removed = SwarmBackend(client).gc(cluster)
    for key, count in gc(client, cluster).items():
        removed[key] = removed.get(key, 0) + count
    return removed


# Functions the commands reach clusters through; tests replace them via ``obj``.
Backend = Mapping[str, Callable[..., Any]]
DEFAULT_BACKEND: Backend = {"create": _create, "attach": _attach_docker, "gc": _gc}
# Where nodes run (harness.backends.BACKENDS); the first is the default.
BACKEND_CHOICES = ("docker", "swarm")


def on(backend: Backend, kind: str) -> Backend:
    """``backend`` making and finding clusters on ``kind`` (the default is passed as nothing)."""
    if kind == BACKEND_CHOICES[0]:
        return backend
    return {**backend, "create": functools.partial(backend["create"], backend=kind),
            "attach": functools.partial(backend["attach"], backend=kind)}


def removed_text(removed: Mapping[str, int]) -> str:
    """``removed 3 containers, 3 volumes, 1 networks`` (+ services, + the swarm left, when there were)."""
    text = f"removed {removed['containers']} containers, {removed['volumes']} volumes, {removed['networks']} networks"
    if removed.get("services"):
        text += f", {removed['services']} swarm services"
    if removed.get("swarm_left"):
        text += "; left the swarm the harness had made"
    return text


def factory(backend: Backend, kind: str, init_swarm: bool) -> Callable[..., Any]:
    """The experiment's cluster factory on ``kind``; ``--init-swarm`` only means something on swarm."""
    if init_swarm and kind != "swarm":
        raise HarnessError("--init-swarm needs --docker-backend swarm")
    create = on(backend, kind)["create"]
    return functools.partial(create, init_swarm=True) if init_swarm else create
