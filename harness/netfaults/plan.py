"""Network faults planned as data: which rules go on which node, and what to probe after.

Every planner is pure (no Docker, no I/O): it validates its arguments and returns a
``FaultPlan``; ``execute.FaultExecutor`` runs plans and probes them. Rules are the
iptables argument lists of ``netfaults.rules``, installed inside each node's own
network namespace. Cuts go on *both* ends of a link, so a cut survives one end
being restarted (a restarted container gets a fresh namespace with no rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .. import topology
from ..errors import HarnessError, NodeNotFound
from . import rules as iptables_rules

# Removes any tc qdisc (delay) from the node's interface; succeeds when there is none.
TC_CLEAR = ("sh", "-c", "tc qdisc del dev eth0 root 2>/dev/null || true")
CUT_CHAINS = (iptables_rules.CHAIN_IN, iptables_rules.CHAIN_OUT)

Link = tuple[str, str]


@dataclass(frozen=True)
class Step:
    """What runs on one node: flush chains, append rules, then one tc command."""

    flush: tuple[str, ...] = ()                   # harness chains emptied first
    rules: tuple[tuple[str, ...], ...] = ()       # iptables argument lists appended after the flush
    tc: tuple[str, ...] | None = None             # argv of a tc command run after the rules


@dataclass(frozen=True)
class LossCheck:
    """Connects from ``peer`` to ``node`` must see a drop (when ``attempts`` is not None)."""

    node: str
    percent: float
    peer: str | None
    attempts: int | None  # connects needed to see a drop with 99.9 % confidence; None: rule check only


@dataclass(frozen=True)
class DelayCheck:
    """A connect from ``peer`` to ``node`` must take at least 80 % of ``ms``."""

    node: str
    ms: float
    peer: str | None


@dataclass(frozen=True)
class FaultPlan:
    """A network fault: steps per node, then the links to probe and the checks to run."""

    action: str
    steps: dict[str, Step]
    # directed link (src, dst) -> whether src must still reach dst afterwards
    expect: dict[Link, bool] = field(default_factory=dict)
    loss: LossCheck | None = None
    delay: DelayCheck | None = None


def script(step: Step, iptables: str) -> str:
    """The shell script installing ``step``'s rules with ``iptables`` (chains created if missing)."""
    parts = [iptables_rules.setup_script(iptables)]
    if step.flush:
        parts.append(iptables_rules.flush_script(iptables, step.flush))
    if step.rules:
        parts.append(iptables_rules.rules_script(iptables, step.rules))
    return "\n".join(parts)


def _mesh(nodes: Sequence[str], open_: bool = True) -> dict[Link, bool]:
    return {(a, b): open_ for a in nodes for b in nodes if a != b}


def partition(groups: Sequence[Iterable[str]], nodes: Sequence[str], running: Sequence[str],
              ips: Mapping[str, str]) -> tuple[list[list[str]], FaultPlan]:
    """Cut ``groups`` from each other on the running nodes; return the full grouping and the plan.

    Replaces any earlier partition or one-way cut (loss and delay stay). Nodes in no
    group form one more group.
    """
    full = topology.validate_groups(groups, nodes)
    cuts = topology.partition_cuts(full)
    steps = {n: Step(flush=CUT_CHAINS, rules=tuple(tuple(r) for r in iptables_rules.partition_rules(n, full, ips)))
             for n in running}
    expect = {link: link not in cuts for link in _mesh(running)}
    return full, FaultPlan("partition", steps, expect)


def cut(links: Iterable[Link], running: Sequence[str], ips: Mapping[str, str]) -> FaultPlan:
    """Cut each given directed link both ways (any shape: rings, bridges); replaces earlier cuts like ``partition``."""
    cuts = {tuple(link) for link in links} | {(b, a) for a, b in links}
    steps = {n: Step(flush=CUT_CHAINS, rules=tuple(
        rule for (src, dst) in sorted(cuts) if src == n
        for rule in (("-A", iptables_rules.CHAIN_OUT, "-d", ips[dst], "-j", "DROP"),
                     ("-A", iptables_rules.CHAIN_IN, "-s", ips[dst], "-j", "DROP")))) for n in running}
    return FaultPlan("cut", steps, {link: link not in cuts for link in _mesh(running)})


def check_one_way(src: str, dst: str, nodes: Sequence[str], running: Sequence[str]) -> None:
    """Raise unless ``src`` and ``dst`` are two different running nodes of the cluster."""
    for n in (src, dst):
        if n not in nodes:
            raise NodeNotFound(f"no node {n!r} in the cluster (nodes: {', '.join(nodes)})")
    if src == dst:
        raise HarnessError("partition_one_way needs two different nodes")
    for n in (src, dst):
        if n not in running:
            raise HarnessError(f"{n} is not running; a one-way cut needs both ends running to be verified")


def one_way(src: str, dst: str, nodes: Sequence[str], running: Sequence[str], ips: Mapping[str, str],
            back_open: bool) -> FaultPlan:
    """Cut what ``src`` opens towards ``dst``, keeping ``dst -> src`` as it was (``back_open``).

    Adds to any existing partition. Both ends must be running: the probe needs them.
    """
    check_one_way(src, dst, nodes, running)
    steps = {n: Step(rules=tuple(tuple(r) for r in iptables_rules.one_way_rules(n, src, dst, ips))) for n in (src, dst)}
    return FaultPlan("partition_one_way", steps, {(src, dst): False, (dst, src): back_open})


def heal(running: Sequence[str]) -> FaultPlan:
    """Remove every cut, loss and delay on the running nodes; all their links must be open."""
    steps = {n: Step(flush=tuple(iptables_rules.CHAINS), tc=TC_CLEAR) for n in running}
    return FaultPlan("heal", steps, _mesh(running))


def _peer(node: str, running: Sequence[str]) -> str | None:
    return next((n for n in running if n != node), None)


def loss(node: str, percent: float, running: Sequence[str], spare: Sequence[str] = ()) -> FaultPlan:
    """Drop ``percent`` % of the packets ``node`` receives (0 removes the loss).

    ``spare`` lists sources exempt from the loss (the harness's own path to the node).
    """
    percent = float(percent)
    if not 0 <= percent <= 100:
        raise HarnessError(f"loss percent must be within 0..100, got {percent:g}")
    if node not in running:
        raise HarnessError(f"cannot apply loss to {node}: it is not running")
    rules = iptables_rules.loss_rules(percent, spare=spare) if percent > 0 else []
    step = Step(flush=(iptables_rules.CHAIN_LOSS,), rules=tuple(tuple(r) for r in rules))
    check = None
    if percent > 0:
        check = LossCheck(node, percent, _peer(node, running), iptables_rules.loss_probe_attempts(percent))
    return FaultPlan("loss", {node: step}, loss=check)


def delay(node: str, ms: float, running: Sequence[str]) -> FaultPlan:
    """Delay every packet ``node`` sends by ``ms`` with tc netem (0 or less removes the delay)."""
    if node not in running:
        raise HarnessError(f"cannot apply delay to {node}: it is not running")
    if ms <= 0:
        return FaultPlan("delay", {node: Step(tc=TC_CLEAR)})
    tc = ("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", f"{ms:g}ms")
    return FaultPlan("delay", {node: Step(tc=tc)}, delay=DelayCheck(node, float(ms), _peer(node, running)))
