"""Node names and partition groups, shared by the simulator, the experiment and the backends.

Nodes are named ``n1``, ``n2``, ... and each listens on ``NODE_PORT``. A partition
is a list of groups of node names; ``partition_cuts`` turns it into *cut directed
links* ``(src, dst)``, meaning "connections initiated by src towards dst get no answer".

Partition semantics (as Blockade): the groups listed are mutually cut; every node
that appears in no group is put, together with the other unlisted nodes, into one
extra group. ``isolate(n)`` is ``partition([[n]])``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from .errors import InvalidPartition, NodeNotFound

NODE_PORT = 5000

_NODE_NAME = re.compile(r"^n([1-9][0-9]*)$")


def node_index(name: str) -> int:
    """Return the number of node ``"n<k>"`` (``"n3"`` -> 3); raise NodeNotFound otherwise."""
    m = _NODE_NAME.match(name) if isinstance(name, str) else None
    if not m:
        raise NodeNotFound(f"not a node name: {name!r} (expected n1, n2, ...)")
    return int(m.group(1))


def is_node_name(name: str | None) -> bool:
    """Whether ``name`` is a node name ``n<k>`` (labels of other harness objects are not)."""
    return isinstance(name, str) and _NODE_NAME.match(name) is not None


def node_names(count: int) -> list[str]:
    """Return the names of a ``count``-node cluster: n1..n<count>."""
    return [f"n{k}" for k in range(1, count + 1)]


def node_address(name: str) -> str:
    """Return the ``host:port`` node ``name`` advertises to its peers (``n3`` -> ``n3:5000``)."""
    return f"{name}:{NODE_PORT}"


def sort_nodes(names: Iterable[str]) -> list[str]:
    """Sort node names by number (n2 before n10)."""
    return sorted(names, key=node_index)


def validate_groups(groups: Sequence[Iterable[str]], nodes: Sequence[str]) -> list[list[str]]:
    """Check partition groups against the cluster's nodes and return the full grouping.

    Groups must be non-empty, name known nodes, and not share nodes. Nodes listed in
    no group are returned as one extra group. Fewer than two resulting groups is an
    error (that would cut nothing: use heal).
    """
    known = set(nodes)
    seen: dict[str, int] = {}
    result: list[list[str]] = []
    if isinstance(groups, (str, bytes)):
        raise InvalidPartition("groups must be a list of lists of node names, not a string")
    for i, group in enumerate(groups):
        if isinstance(group, str):
            raise InvalidPartition(f"group {i + 1} is a string ({group!r}); use a list of names")
        members = list(group)
        if not members:
            raise InvalidPartition(f"group {i + 1} is empty")
        for name in members:
            if name not in known:
                raise NodeNotFound(f"unknown node {name!r} in group {i + 1} (nodes: {', '.join(nodes)})")
            if name in seen:
                where = "twice in" if seen[name] == i else f"in group {seen[name] + 1} and"
                raise InvalidPartition(f"node {name} is {where} group {i + 1}")
            seen[name] = i
        result.append(sort_nodes(members))
    rest = [n for n in nodes if n not in seen]
    if rest:
        result.append(sort_nodes(rest))
    if len(result) < 2:
        raise InvalidPartition("a partition needs at least two groups (all nodes in one group cuts nothing)")
    return result


def partition_cuts(groups: Sequence[Sequence[str]]) -> set[tuple[str, str]]:
    """Return every directed link (src, dst) between nodes of different groups."""
    group_of = {n: i for i, g in enumerate(groups) for n in g}
    return {(a, b) for a in group_of for b in group_of if group_of[a] != group_of[b]}
