"""Host limits that a cluster of containers can run into, checked before it starts.

The kernel keeps one ARP (neighbour) table for every network namespace on the host:
the entries of all containers count against the same limit,
``net.ipv4.neigh.default.gc_thresh3`` (1024 by default). Nodes that gossip with every
peer end up with an entry for each of them, so an N-node cluster needs about N * (N + 1)
entries (each container's peers and gateway, and the host's entries for the
containers). A 40-node cluster needs about 1,640. Past the limit the kernel logs
"neighbor table overflow" and drops the packets whose next hop cannot be resolved: some
containers silently cannot reach others, and exchanges time out both ways.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .errors import HarnessError

NEIGH = Path("/proc/sys/net/ipv4/neigh/default")
# Entries for the host's own interfaces and other containers, beyond the clusters'.
MARGIN = 256


class HostLimitError(HarnessError):
    """The host cannot run the requested cluster as configured."""


def neighbour_entries_needed(sizes: Iterable[int]) -> int:
    """Return the ARP entries clusters of these sizes need at most, with a margin."""
    return sum(n * (n + 1) for n in sizes) + MARGIN


def _read(name: str, root: Path) -> int | None:
    try:
        return int((root / name).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def neighbour_limit(root: Path = NEIGH) -> int | None:
    """Return the host's hard ARP table limit (gc_thresh3), or None where it cannot be read."""
    return _read("gc_thresh3", root)


def limits_for(needed: int) -> dict[str, int]:
    """Return gc_thresh1..3 that fit ``needed`` entries under the soft limit (gc_thresh2)."""
    hard = _round_up(2 * needed)
    return {"gc_thresh3": hard, "gc_thresh2": hard // 2, "gc_thresh1": min(1024, hard // 8)}


def advice(needed: int) -> str:
    """Return the commands that raise the limit to fit ``needed`` entries."""
    wanted = limits_for(needed)
    return (f"sudo sysctl -w net.ipv4.neigh.default.gc_thresh3={wanted['gc_thresh3']} "
            f"net.ipv4.neigh.default.gc_thresh2={wanted['gc_thresh2']} "
            f"(or: sudo .venv/bin/python -m harness tune-host --nodes N)")


def check_neighbour_table(size: int, others: Iterable[int] = (), root: Path = NEIGH) -> None:
    """Raise HostLimitError if a ``size``-node cluster beside ``others`` would overflow the ARP table."""
    limit = neighbour_limit(root)
    if limit is None:  # not Linux, or /proc not visible: nothing to check
        return
    others = list(others)
    needed = neighbour_entries_needed([size, *others])
    if needed > limit:
        besides = f" beside {len(others)} running cluster(s) of {sum(others)} nodes" if others else ""
        raise HostLimitError(
            f"a {size}-node cluster{besides} needs about {needed:,} ARP entries, but this host's "
            f"neighbour table holds at most {limit:,} (net.ipv4.neigh.default.gc_thresh3), shared by "
            f"every container; past it some containers silently cannot reach others. "
            f"Raise it: {advice(needed)}")


def tune(size: int, others: Iterable[int] = (), root: Path = NEIGH) -> list[str]:
    """Raise gc_thresh1..3 so the clusters fit under the soft limit; return the changes made.

    Only raises limits, never lowers them. Needs root (PermissionError otherwise).
    """
    changes = []
    for name, value in limits_for(neighbour_entries_needed([size, *others])).items():
        old = _read(name, root)
        if old is None or old >= value:
            continue
        (root / name).write_text(f"{value}\n")
        changes.append(f"net.ipv4.neigh.default.{name}: {old} -> {value}")
    return changes


def _round_up(n: int) -> int:
    """Return the next power of two at or above ``n`` (at least 1024)."""
    size = 1024
    while size < n:
        size *= 2
    return size
