"""iptables rules for network faults, as argument lists and shell scripts (no Docker).

A fault's cut directed links ``(src, dst)`` (see ``harness.topology``) become
iptables rules executed inside each container's own network namespace; the probe
then checks an expectation ``reachability(src, dst) -> bool``, and
``reachability_mismatches`` names every link where the two disagree.

Chains (created on demand, each jumped to from the built-in chain named):

- ``SD-FAULTS-IN``  (INPUT):  partition and one-way cut rules on the receiving side;
- ``SD-FAULTS-OUT`` (OUTPUT): the same cuts on the sending side;
- ``SD-LOSS``       (INPUT):  random packet loss.

Every rule is installed on *both* ends of a cut, so a cut survives one end being
restarted (a restarted container gets a fresh network namespace with no rules).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from ..topology import partition_cuts

CHAIN_IN = "SD-FAULTS-IN"
CHAIN_OUT = "SD-FAULTS-OUT"
CHAIN_LOSS = "SD-LOSS"
# chain -> built-in chain that jumps to it
CHAINS = {CHAIN_IN: "INPUT", CHAIN_OUT: "OUTPUT", CHAIN_LOSS: "INPUT"}


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
    UDP gossip is tracked the same way: a node sends each request from a fresh ephemeral
    port (``node.udp``), so the request is a flow's first, ORIGINAL packet and the reply
    from the peer's port its REPLY.
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
