"""Running a check on real nodes: a Docker (or swarm) cluster, threads for clients, nemesis and poller.

The plan is the seeded one of the simulator; timing is real. Each client is a thread
performing its own operations in order over HTTP, each at its due instant (or late, when
the previous one took long); the nemesis thread applies and undoes faults on schedule
(what this engine cannot do, found by a probe before the start, is recorded as skipped);
the poller reads every node's listing every ``poll_s`` seconds until the final read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .client import HttpClient, perform
from .faults import DockerFaults, Nemesis
from .history import History
from .model import Settings
from .plan import BOOT_TIMEOUT, Plan, draw, finish
from .workload import Op

log = logging.getLogger(__name__)


def _sleep_until(t: float, clock: Callable[[], float], stop: threading.Event) -> bool:
    """Wait until ``clock()`` reaches ``t``; False when stopped first."""
    return not stop.wait(max(0.0, t - clock()))


def _client(ops: list[Op], url_of: Callable[[str], str], clock: Callable[[], float], history: History,
            stop: threading.Event) -> None:
    http = HttpClient(url_of)
    try:
        for op in ops:
            if not _sleep_until(op.t, clock, stop):
                return
            try:
                perform(op, http, clock, time.time, history)
            except Exception:  # noqa: BLE001 - one broken operation must not end the client
                log.exception("client %d: operation %d failed", op.client, op.index)
    finally:
        http.close()


def _nemesis(plan: Plan, nemesis: Nemesis, clock: Callable[[], float], stop: threading.Event) -> None:
    for fault in plan.faults:
        if not _sleep_until(fault.start, clock, stop):
            return
        nemesis.start(fault)
        if not _sleep_until(fault.end, clock, stop):
            return
        nemesis.end(fault)


def _poller(cluster: Any, addresses: list[str], every: float, clock: Callable[[], float], history: History,
            stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            history.read(clock(), cluster.views(cluster.nodes), addresses)
        except Exception:  # noqa: BLE001 - a failed poll is logged; the next one may work
            log.exception("poll failed")
        stop.wait(every)


def _threads(cluster: Any, plan: Plan, nemesis: Nemesis, clock: Callable[[], float], history: History,
             stop: threading.Event, settings: Settings) -> tuple[list[threading.Thread], threading.Thread]:
    by_client: dict[int, list[Op]] = {}
    for op in plan.ops:
        by_client.setdefault(op.client, []).append(op)
    workers = [threading.Thread(target=_client, args=(ops, cluster.url, clock, history, stop), daemon=True,
                                name=f"check-client-{c}") for c, ops in by_client.items()]
    workers.append(threading.Thread(target=_nemesis, args=(plan, nemesis, clock, stop), daemon=True,
                                    name="check-nemesis"))
    poller = threading.Thread(target=_poller, args=(cluster, plan.addresses, settings.poll_s, clock, history, stop),
                              daemon=True, name="check-poller")
    return workers, poller


def run_docker(settings: Settings, history: History, cluster_factory: Callable[..., Any] | None = None
               ) -> dict[str, Any]:
    """Run the check on a fresh cluster named ``settings.name`` (removed afterwards)."""
    if cluster_factory is None:
        from ..cluster import Cluster  # noqa: PLC0415 - Docker is loaded only for Docker runs

        cluster_factory = Cluster
    env = {"SD_EXPIRE_GRACE": f"{settings.grace:g}",
           "SD_TOMBSTONE_TTL": f"{max(60.0, 3 * (settings.ttl + settings.grace)):g}"}
    cluster = cluster_factory(nodes=settings.nodes, name=settings.name, image=settings.image,
                              interval=settings.interval, ttl=settings.ttl, env=env, timeline=False,
                              backend=settings.backend)
    with cluster:
        cluster.wait_converged(timeout=BOOT_TIMEOUT)
        adapter = DockerFaults(cluster)
        unsupported = adapter.probe(settings.faults)
        plan = draw(settings, cluster.nodes)
        t0 = time.monotonic()

        def clock() -> float:
            return time.monotonic() - t0

        nemesis = Nemesis(adapter, history, clock, unsupported)
        stop = threading.Event()
        workers, poller = _threads(cluster, plan, nemesis, clock, history, stop, settings)
        poller.start()
        try:
            for w in workers:
                w.start()
            for w in workers:
                w.join(settings.duration + 120.0)
            final = finish(cluster, nemesis, history, clock, settings)
        finally:
            stop.set()
            poller.join(10.0)
    return {"final": final, "faults": nemesis.counts(), "schedule": [f.describe() for f in plan.faults]}
