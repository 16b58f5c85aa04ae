"""Reading swarm tasks: which task is a node's current one, its state in the harness's words, its IP.

Pure functions over the task dicts of the Engine API (``GET /tasks``), unit-tested
without Docker. A node's service keeps the tasks it had (failed, shut down) beside the
one it runs; the current task is the newest one swarm wants running, else the newest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

# Task states (swarmkit) -> container states as the harness speaks them (engine backend alike).
TASK_STATES = {
    "new": "created", "pending": "created", "assigned": "created", "accepted": "created",
    "ready": "created", "preparing": "created", "starting": "created",
    "running": "running",
    "complete": "exited", "shutdown": "exited", "failed": "exited",
    "rejected": "dead", "orphaned": "dead", "remove": "removing",
}

_STAMP = re.compile(r"^(?P<head>[^.Z+]*)(?:\.(?P<frac>\d+))?")


def created_key(task: Mapping) -> tuple[str, str]:
    """Sort key of a task's ``CreatedAt`` (RFC 3339, fraction of any length up to nanoseconds)."""
    m = _STAMP.match(str(task.get("CreatedAt") or ""))
    return (m.group("head"), (m.group("frac") or "").ljust(9, "0")) if m else ("", "")


def current_task(tasks: Sequence[Mapping]) -> dict | None:
    """The task that stands for the node now: the newest one desired running, else the newest of all."""
    if not tasks:
        return None
    wanted = [t for t in tasks if t.get("DesiredState") == "running"]
    newest: Mapping = max(wanted or tasks, key=created_key)
    return dict(newest)


def container_id(task: Mapping | None) -> str:
    """The ID of the task's container ("" before it has one)."""
    return (((task or {}).get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID") or ""


def harness_state(task: Mapping | None, containers: Mapping[str, str]) -> str:
    """running, paused, exited, created, dead...: the container's state when known, else the task's.

    ``containers`` maps container IDs to their states (``docker inspect``); a task with
    no task at all is "missing".
    """
    if task is None:
        return "missing"
    cid = container_id(task)
    if cid in containers:
        return containers[cid]
    state = str(((task.get("Status") or {}).get("State")) or "")
    return TASK_STATES.get(state, state or "missing")


def task_ip(task: Mapping | None, network: str) -> str:
    """The task's IPv4 address on the overlay network named ``network`` ("" when it has none yet)."""
    for attachment in (task or {}).get("NetworksAttachments") or []:
        if ((attachment.get("Network") or {}).get("Spec") or {}).get("Name") == network:
            for address in attachment.get("Addresses") or []:
                return str(address).split("/")[0]
    return ""
