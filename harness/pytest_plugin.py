"""pytest plugin: gossip registry clusters as a fixture, for any project's test suite.

Installed with this package (entry point ``pytest11: gossip_harness``), it gives every
test session

- ``gossip_cluster``: a factory ``gossip_cluster(nodes=None, backend=None, interval=None,
  fanout=None, ttl=None, **more)`` returning a started ``ClusterLike`` (register, views,
  partition, heal, kill, start, wait_converged...); every cluster it made is removed when
  the test ends, passed or failed;
- ``--gossip-backend docker|swarm|sim`` (default docker): where nodes run, as containers,
  swarm services, or simulated in-process on a virtual clock (no Docker needed);
- ``--gossip-nodes N`` (default 3): nodes when the test does not say;
- ``--gossip-image`` (default ``$SD_IMAGE`` or sd-node:latest): the node image.

``gossip_backend``, ``gossip_nodes`` and ``gossip_image`` are fixtures too, so a
conftest.py can override them (as pytest-docker's ``docker_compose_file``). The module
imports only pytest at load time: Docker and the node code load when a cluster is made.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

BACKENDS = ("docker", "swarm", "sim")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gossip", "gossip registry clusters (harness.pytest_plugin)")
    group.addoption("--gossip-backend", choices=BACKENDS, default="docker",
                    help="where gossip_cluster's nodes run: docker, swarm or sim (default: docker)")
    group.addoption("--gossip-nodes", type=int, default=3, help="nodes per gossip_cluster by default (3)")
    group.addoption("--gossip-image", default=os.environ.get("SD_IMAGE", "sd-node:latest"),
                    help="node image of docker and swarm clusters (default: $SD_IMAGE or sd-node:latest)")


@pytest.fixture(scope="session")
def gossip_backend(request: pytest.FixtureRequest) -> str:
    """Where clusters run unless a test says otherwise (``--gossip-backend``)."""
    return str(request.config.getoption("gossip_backend"))


@pytest.fixture(scope="session")
def gossip_nodes(request: pytest.FixtureRequest) -> int:
    """Nodes per cluster unless a test says otherwise (``--gossip-nodes``)."""
    return int(request.config.getoption("gossip_nodes"))


@pytest.fixture(scope="session")
def gossip_image(request: pytest.FixtureRequest) -> str:
    """The node image of docker and swarm clusters (``--gossip-image``)."""
    return str(request.config.getoption("gossip_image"))


def make_cluster(backend: str, nodes: int, image: str, interval: float | None = None, fanout: int | None = None,
                 ttl: float | None = None, **more: Any) -> Any:
    """A started cluster of ``nodes`` on ``backend``; ``more`` goes to ``Cluster`` or ``SimCluster``."""
    if backend == "sim":
        import dataclasses  # noqa: PLC0415 - nothing of the harness loads before a cluster is asked for

        from .sim import SIM, SimCluster  # noqa: PLC0415

        given = {k: v for k, v in (("interval", interval), ("fanout", fanout), ("ttl", ttl)) if v is not None}
        return SimCluster(nodes, config=dataclasses.replace(more.pop("config", SIM), **given), **more)
    if backend not in BACKENDS:
        raise pytest.UsageError(f"unknown gossip backend {backend!r} (one of {', '.join(BACKENDS)})")
    from .cluster import Cluster  # noqa: PLC0415

    more.setdefault("name", f"pytest-{uuid.uuid4().hex[:8]}")
    more.setdefault("timeline", False)
    return Cluster(nodes=nodes, image=image, backend=backend, interval=interval, fanout=fanout, ttl=ttl,
                   **more).up()


@pytest.fixture
def gossip_cluster(gossip_backend: str, gossip_nodes: int, gossip_image: str) -> Iterator[Callable[..., Any]]:
    """Factory of started clusters; each one it made is removed when the test ends."""
    made: list[Any] = []

    def factory(nodes: int | None = None, backend: str | None = None, **settings: Any) -> Any:
        cluster = make_cluster(backend or gossip_backend, nodes or gossip_nodes, gossip_image, **settings)
        made.append(cluster)
        return cluster

    try:
        yield factory
    finally:
        failures = []
        for cluster in reversed(made):
            down = getattr(cluster, "down", None)  # a simulated cluster holds nothing outside the process
            try:
                if down is not None:
                    down()
            except Exception as exc:  # noqa: BLE001 - remove the others, then report
                failures.append(exc)
        if failures:
            raise failures[0]
