"""Pure planning of network faults: node names, partition groups, cut links, iptables rules.

Nothing here talks to Docker. A fault is planned as a set of *cut directed links*
``(src, dst)`` meaning "connections initiated by src towards dst get no answer".
Every plan is turned into iptables rules executed inside each container's own
network namespace, and into an expectation the probe checks afterwards:
``reachability(src, dst) -> bool``.

Partition semantics (as Blockade): the groups listed are mutually cut; every node
that appears in no group is put, together with the other unlisted nodes, into one
extra group. ``isolate(n)`` is ``partition([[n]])``.

Chains (created on demand, each jumped to from the built-in chain named):

- ``SD-FAULTS-IN``  (INPUT):  partition and one-way cut rules on the receiving side;
- ``SD-FAULTS-OUT`` (OUTPUT): the same cuts on the sending side;
- ``SD-LOSS``       (INPUT):  random packet loss.

Every rule is installed on *both* ends of a cut, so a cut survives one end being
restarted (a restarted container gets a fresh network namespace with no rules).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

from .errors import InvalidPartition, NodeNotFound

CHAIN_IN = "SD-FAULTS-IN"
CHAIN_OUT = "SD-FAULTS-OUT"
CHAIN_LOSS = "SD-LOSS"
# chain -> built-in chain that jumps to it
CHAINS = {CHAIN_IN: "INPUT", CHAIN_OUT: "OUTPUT", CHAIN_LOSS: "INPUT"}

NODE_PORT = 5000

_NODE_NAME = re.compile(r"^n([1-9][0-9]*)$")


def node_index(name: str) -> int:
    """Return the number of node ``"n<k>"`` (``"n3"`` -> 3); raise NodeNotFound otherwise."""
    m = _NODE_NAME.match(name) if isinstance(name, str) else None
    if not m:
        raise NodeNotFound(f"not a node name: {name!r} (expected n1, n2, ...)")
    return int(m.group(1))


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


def partition_rules(node: str, groups: Sequence[Sequence[str]], ips: Mapping[str, str]) -> list[list[str]]:
    """Return the iptables argument lists that cut ``node`` from every other group, both ways.

    Rules match all packets (new and established connections) from/to each peer IP.
    """
    rules: list[list[str]] = []
    for src, dst in sorted(partition_cuts(groups)):
        if src == node:
            rules.append(["-A", CHAIN_OUT, "-d", ips[dst], "-j", "DROP"])
            rules.append(["-A", CHAIN_IN, "-s", ips[dst], "-j", "DROP"])
    return rules


def one_way_rules(node: str, src: str, dst: str, ips: Mapping[str, str]) -> list[list[str]]:
    """Return the rules ``node`` needs so connections initiated by src towards dst die.

    conntrack's ``--ctdir ORIGINAL`` matches only packets travelling in the direction
    of the connection's first packet: src's SYNs, requests and ACKs on connections src
    opened. Replies src sends on connections dst opened are direction REPLY and pass,
    so dst can still reach src. On src the rule sits in OUTPUT, on dst in INPUT.
    """
    rules: list[list[str]] = []
    if node == src:
        rules.append(["-A", CHAIN_OUT, "-d", ips[dst], "-m", "conntrack", "--ctdir", "ORIGINAL", "-j", "DROP"])
    if node == dst:
        rules.append(["-A", CHAIN_IN, "-s", ips[src], "-m", "conntrack", "--ctdir", "ORIGINAL", "-j", "DROP"])
    return rules


def loss_rules(percent: float, spare: Sequence[str] = ()) -> list[list[str]]:
    """Return rules dropping ``percent`` % of the packets a node receives.

    Loopback and the addresses in ``spare`` (the bridge gateway, through which the
    harness itself talks to the node) are exempt: the fault is between nodes.
    """
    if not 0 < percent <= 100:
        raise ValueError(f"loss percent must be in (0, 100], got {percent}")
    probability = f"{percent / 100:.4f}"
    rules = [["-A", CHAIN_LOSS, "-s", ip, "-j", "RETURN"] for ip in spare]
    rules.append(["-A", CHAIN_LOSS, "!", "-i", "lo", "-m", "statistic", "--mode", "random",
                  "--probability", probability, "-j", "DROP"])
    return rules


def loss_probe_attempts(percent: float, confidence: float = 0.999, cap: int = 300) -> int | None:
    """Return how many connects are needed to see a drop with ``confidence``, or None if over ``cap``.

    A TCP connect with a timeout below the SYN retransmission time (1 s) fails exactly
    when its SYN is dropped, which happens with probability ``percent / 100``.
    """
    p = percent / 100
    if p >= 1:
        return 1
    if p <= 0:
        return None
    n = math.ceil(math.log(1 - confidence) / math.log(1 - p))
    return n if n <= cap else None


def setup_script(iptables: str) -> str:
    """Return a shell script that creates the harness chains and their jumps, idempotently."""
    lines = ["set -e"]
    for chain, parent in CHAINS.items():
        lines.append(f"{iptables} -w -N {chain} 2>/dev/null || true")
        lines.append(f"{iptables} -w -C {parent} -j {chain} 2>/dev/null || {iptables} -w -I {parent} 1 -j {chain}")
    return "\n".join(lines)


def flush_script(iptables: str, chains: Iterable[str]) -> str:
    """Return a shell script flushing ``chains`` (missing chains are ignored)."""
    return "\n".join(f"{iptables} -w -F {c} 2>/dev/null || true" for c in chains) or "true"


def rules_script(iptables: str, rules: Iterable[Sequence[str]]) -> str:
    """Return a shell script appending ``rules``; it stops at the first failing rule."""
    lines = ["set -e"] + [" ".join([iptables, "-w", *r]) for r in rules]
    return "\n".join(lines)


def reachability_mismatches(
    expected: Mapping[tuple[str, str], bool], observed: Mapping[tuple[str, str], bool]
) -> list[str]:
    """Return one line per directed link whose observed reachability differs from the expectation."""
    lines = []
    for (src, dst), want in sorted(expected.items()):
        got = observed.get((src, dst))
        if got is None:
            lines.append(f"{src} -> {dst}: not probed")
        elif got != want:
            state = {True: "open", False: "cut"}
            lines.append(f"{src} -> {dst}: expected {state[want]}, probe found it {state[got]}")
    return lines
