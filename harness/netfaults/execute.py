"""Run fault plans through a backend's exec, then probe that they took effect.

``FaultExecutor.apply(plan)`` installs each node's step in parallel, then checks
the plan's expectations from inside the containers with ``sd-probe``: every link
expected cut must refuse a TCP connect, every link expected open must accept one
(retried against transient loss), a loss must drop a connect, a delay must slow
one. A fault whose probe disagrees raises ``FaultNotApplied``; a kernel or image
lacking what the fault needs raises ``FaultNotSupported``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..backends import Backend, Node
from ..errors import FaultNotApplied, FaultNotSupported
from ..timeline import Timeline
from . import plan as plans
from . import probe, rules
from .plan import FaultPlan, Link, Step

# Parallel execs at most.
MAX_WORKERS = 8
# Words in iptables' output meaning the kernel lacks a match or target.
_MISSING_FEATURE = ("couldn't load match", "no chain/target/match", "extension")
# Words in tc's output meaning the qdisc (netem) is unavailable.
_NO_NETEM = ("unknown", "not supported", "no such file")


class FaultExecutor:
    """Applies FaultPlans to the nodes of one cluster through ``backend.exec`` and probes them."""

    def __init__(self, backend: Backend, node: Callable[[str], Node], timeline: Timeline | None = None,
                 image: str = ""):
        self.backend = backend
        self.node = node
        self.timeline = timeline or Timeline(None)
        self.image = image
        self._iptables: str | None = None  # the iptables command that works in this image

    def exec(self, node: str, argv: Sequence[str]) -> tuple[int, str]:
        """Run ``argv`` as root in ``node``'s network namespace."""
        return self.backend.exec(self.node(node), argv)

    def apply(self, plan: FaultPlan) -> str:
        """Run ``plan`` on its nodes, then probe it; return what the probe saw."""
        self._on_nodes(list(plan.steps), lambda n: self._run_step(n, plan.steps[n], plan.action))
        if plan.expect:
            self.verify(plan.expect, plan.action)
        if plan.loss is not None:
            return self._check_loss(plan.loss)
        if plan.delay is not None:
            return self._check_delay(plan.delay)
        return "links as expected" if plan.expect else "none"

    # ------------------------------------------------------------------ steps

    def iptables(self, node: str) -> str:
        """The iptables command that works in this image (nft first, then legacy)."""
        if self._iptables is None:
            for candidate in ("iptables", "iptables-legacy"):
                rc, _ = self.exec(node, ["sh", "-c", f"{candidate} -w -S INPUT >/dev/null 2>&1"])
                if rc == 0:
                    self._iptables = candidate
                    break
            else:
                raise FaultNotSupported(f"no working iptables in {self.image or 'the image'} "
                                        "(needs iptables and cap NET_ADMIN)")
        return self._iptables

    def _run_step(self, node: str, step: Step, action: str) -> None:
        if step.flush or step.rules:
            rc, out = self.exec(node, ["sh", "-c", plans.script(step, self.iptables(node))])
            if rc != 0:
                if any(word in out.lower() for word in _MISSING_FEATURE):
                    raise FaultNotSupported(f"{action} on {node}: the kernel lacks an iptables feature: "
                                            f"{out.strip()}", out)
                raise FaultNotApplied(f"{action} on {node}: iptables failed (rc {rc}): {out.strip()}", out)
        if step.tc is not None:
            rc, out = self.exec(node, step.tc)
            if rc != 0:
                if rc == 127 or any(word in out.lower() for word in _NO_NETEM):
                    raise FaultNotSupported(
                        f"{action} needs tc netem, which this kernel lacks (sch_netem): {out.strip()}; "
                        "use loss() (iptables statistic) instead", out)
                raise FaultNotApplied(f"tc on {node} failed (rc {rc}): {out.strip()}", out)

    def _on_nodes(self, nodes: Sequence[str], fn: Callable[[str], object]) -> None:
        if not nodes:
            return
        with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(nodes))) as pool:
            list(pool.map(fn, nodes))

    # ------------------------------------------------------------------ probes

    def probe_links(self, src: str, dsts: Sequence[str], timeout: float = 1.0) -> dict[Link, bool]:
        """Try a TCP connect from ``src`` to each of ``dsts``: link -> connected."""
        ips = {d: self.node(d).ip for d in dsts}
        by_ip = probe.parse(*self.exec(src, probe.connect(list(ips.values()), timeout)), f"probe from {src}")
        return {(src, d): bool(by_ip.get(ip)) for d, ip in ips.items()}

    def verify(self, expected: Mapping[Link, bool], action: str, rounds: int = 3) -> None:
        """Probe every link of ``expected``; re-probe links seen cut that should be open.

        Links expected cut are probed once (a DROP rule never lets one through);
        links expected open get up to ``rounds`` tries against transient loss.
        """
        pending = dict(expected)
        observed: dict[Link, bool] = {}
        for _ in range(rounds):
            by_src: dict[str, list[str]] = {}
            for src, dst in pending:
                by_src.setdefault(src, []).append(dst)
            with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
                for result in pool.map(self.probe_links, list(by_src), list(by_src.values())):
                    observed.update(result)
            pending = {link: want for link, want in pending.items() if want and not observed[link]}
            if not pending:
                break
        wrong = rules.reachability_mismatches(expected, observed)
        if wrong:
            self.timeline.record("fault_not_applied", action=action, mismatches=wrong)
            raise FaultNotApplied(f"{action} did not take effect: " + "; ".join(wrong), "\n".join(wrong))

    def _check_loss(self, check: plans.LossCheck) -> str:
        rc, out = self.exec(check.node, ["sh", "-c", f"{self.iptables(check.node)} -w -S {rules.CHAIN_LOSS}"])
        if rc != 0 or "statistic" not in out:
            raise FaultNotApplied(f"loss on {check.node}: rule not found in {rules.CHAIN_LOSS}", out)
        if check.attempts is None or check.peer is None:
            return "rule present (too little loss or no peer for a statistical probe)"
        seen = probe.parse(*self.exec(check.peer, probe.loss(self.node(check.node).ip, check.attempts)),
                           f"loss probe from {check.peer}")
        if seen.get("failures") == 0:
            raise FaultNotApplied(f"loss {check.percent:g}% on {check.node}: {seen.get('attempts')} connects "
                                  f"from {check.peer} all succeeded", str(seen))
        return f"{check.peer} saw a drop after {seen.get('attempts')} connects"

    def _check_delay(self, check: plans.DelayCheck) -> str:
        if check.peer is None:
            return "no peer to time a connect from"
        seen = probe.parse(*self.exec(check.peer, probe.connect_time(self.node(check.node).ip)),
                           f"delay probe from {check.peer}")
        took = seen.get("seconds")
        if took is None or took < 0.8 * check.ms / 1000:
            raise FaultNotApplied(f"delay {check.ms:g}ms on {check.node}: a connect from {check.peer} took {took}s",
                                  str(seen))
        return f"a connect from {check.peer} took {took:.3f}s"

    def stopped(self, node: str) -> bool:
        """Whether the node's main process (PID 1) is stopped by a signal."""
        return bool(probe.parse(*self.exec(node, probe.stopped(1)), f"process state of {node}").get("stopped"))
