"""Removing a swarm cluster: services, then their task containers and gateways, network, volumes.

Removing a service stops its tasks within their grace period; the containers are
force-removed at once instead, on every engine the harness knows. The overlay network
and the volumes stay "in use" until swarm has let go of the removed tasks' endpoints
and mounts, so their removal is retried for a while.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import docker.errors

from ..errors import HarnessError
from ..wait import wait_until

# Seconds a network or volume may stay in use after its services went.
TIMEOUT = 30.0
MAX_WORKERS = 8


def remove(manager, engines: Sequence, label_filter: list[str]) -> dict[str, int]:
    """Remove what ``label_filter`` selects: services (on ``manager``), containers and volumes (on ``engines``)."""
    filters = {"label": label_filter}
    services = manager.services.list(filters=filters)
    for svc in services:
        ignore_gone(svc.remove)
    containers = [c for e in engines for c in e.containers.list(all=True, filters=filters)]
    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        list(pool.map(lambda c: ignore_gone(c.remove, force=True), containers))
    networks = manager.networks.list(filters=filters)
    for net in networks:
        remove_when_free(net.remove, f"network {net.name}")
    volumes = [v for e in engines for v in e.volumes.list(filters=filters)]
    for vol in volumes:
        remove_when_free(lambda v=vol: v.remove(force=True), f"volume {vol.name}")
    return {"services": len(services), "containers": len(containers), "volumes": len(volumes),
            "networks": len(networks)}


def ignore_gone(remove, **kwargs) -> None:
    """Call ``remove``; an object already gone is fine."""
    try:
        remove(**kwargs)
    except docker.errors.NotFound:
        pass


def remove_when_free(remove, what: str, timeout: float = TIMEOUT) -> None:
    """Call ``remove`` until the object is no longer in use; HarnessError after ``timeout`` s."""

    def attempt() -> bool:
        try:
            remove()
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            text = str(exc).lower()
            if "not found" in text:  # swarm answers 500 for a network removed meanwhile
                return True
            if "in use" not in text and "active endpoints" not in text:
                raise
            return False
        return True

    if not wait_until(attempt, timeout=timeout, interval=0.5).ok:
        raise HarnessError(f"{what} is still in use after {timeout:g}s; run `python -m harness gc` again")
