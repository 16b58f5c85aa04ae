"""Serf's side of the comparison: N ``serf agent`` processes whose log lines are stamped on arrival."""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from harness.localnode import stop_processes

from .common import HOST, BenchError, Trial, wait_for

HANDLER = Path(__file__).resolve().parents[1] / "serf_event.sh"
# memberlist presets as Serf 0.9 builds them (memberlist/config.go); the agent exposes
# only -profile, no gossip-interval key.
SERF_PROFILES = {
    "lan": {"GossipInterval": 0.2, "GossipNodes": 3, "ProbeInterval": 1.0, "PushPullInterval": 30.0},
    "local": {"GossipInterval": 0.1, "GossipNodes": 3, "ProbeInterval": 1.0, "PushPullInterval": 15.0},
}
# The Serf 0.9 agent delivers member events through a coalescer (CoalescePeriod 3 s,
# QuiescentPeriod 1 s, set in cmd/serf/command/agent/command.go): a lone member-update reaches
# event handlers 1 s after it reached the agent.
SERF_QUIESCENT = 1.0
# REFERENCE.md, synchronous push-pull rounds at fanout 3: N -> (mean, p99).


class SerfAgent:
    """One ``serf agent`` process whose stdout lines are timestamped as they arrive."""

    def __init__(self, proc: subprocess.Popen, name: str, rpc: str) -> None:
        self.proc, self.name, self.rpc = proc, name, rpc
        self.lines: list[tuple[float, str]] = []  # (arrival time, "EventMember... <node>")
        self.members: set[str] = set()
        self.tail: list[str] = []  # last lines of any kind, for error messages
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            t = time.time()
            line = raw.decode(errors="replace").rstrip()
            m = re.search(r"serf: (EventMember\w+): (\S+)", line)
            with self.lock:
                self.tail = (self.tail + [line])[-5:]
                if m:
                    self.lines.append((t, f"{m.group(1)} {m.group(2)}"))
                    if m.group(1) == "EventMemberJoin":
                        self.members.add(m.group(2))

    def update_seen(self, node: str, since: float) -> float | None:
        """Return when this agent's Serf layer logged a member-update of ``node`` after ``since``."""
        with self.lock:
            for t, what in self.lines:
                if t >= since and what == f"EventMemberUpdate {node}":
                    return t
        return None


class SerfCluster:
    """N Serf agents on consecutive ports (gossip and RPC), all joined to the first."""

    name = "serf"

    def __init__(self, n: int, base_port: int, rpc_base: int, profile: str, tmp: str) -> None:
        self.n, self.base, self.rpc_base, self.profile = n, base_port, rpc_base, profile
        self.events = Path(tmp) / f"serf-events-{n}.log"
        self.agents: list[SerfAgent] = []

    def start(self) -> None:
        self.events.touch()
        env = {**os.environ, "SERF_BENCH_EVENTS": str(self.events)}
        for i in range(self.n):
            name, rpc = f"n{i}", f"{HOST}:{self.rpc_base + i}"
            args = [
                "serf",
                "agent",
                "-node",
                name,
                "-bind",
                f"{HOST}:{self.base + i}",
                "-rpc-addr",
                rpc,
                "-profile",
                self.profile,
                "-log-level",
                "info",
                "-event-handler",
                f"member-update={HANDLER}",
            ]
            if i:
                args += ["-join", f"{HOST}:{self.base}"]
            proc = subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            self.agents.append(SerfAgent(proc, name, rpc))
            if i == 0:  # the others join it at start and exit if it is not listening yet
                wait_for(
                    lambda: self.agents[0].members,
                    10,
                    0.05,
                    "first serf agent up",
                    lambda: f"its output: {self.agents[0].tail}",
                )

    def wait_converged(self, timeout: float) -> None:
        """Wait until every agent has logged a join for all N agents."""

        def check() -> bool:
            dead = [a.name for a in self.agents if a.proc.poll() is not None]
            if dead:
                raise BenchError(f"serf agents exited: {dead}; last output {self.agents[0].tail}")
            return all(len(a.members) == self.n for a in self.agents)

        wait_for(
            check,
            timeout,
            0.5,
            f"serf N={self.n} converged",
            lambda: ", ".join(f"{a.name}={len(a.members)}" for a in self.agents if len(a.members) != self.n),
        )

    def trial(self, k: int, rng: random.Random, timeout: float) -> Trial:
        """Set a fresh tag on a random agent; stamp when every agent logs the member-update."""
        origin = self.agents[rng.randrange(self.n)]
        tag = f"bench=t{k}"
        t0 = time.time()
        r = subprocess.run(
            ["serf", "tags", f"-rpc-addr={origin.rpc}", "-set", tag], capture_output=True, text=True, timeout=10
        )
        if r.returncode != 0:
            raise BenchError(f"serf tags failed at {origin.name}: {r.stdout}{r.stderr}")
        arrived: dict[str, float] = {}

        def check() -> bool:
            for a in self.agents:
                if a.name not in arrived and (t := a.update_seen(origin.name, t0)) is not None:
                    arrived[a.name] = t
            return len(arrived) == self.n

        wait_for(
            check,
            timeout,
            0.05,
            f"serf N={self.n} trial {k}: {tag} everywhere",
            lambda: f"missing at {sorted({a.name for a in self.agents} - set(arrived))[:10]}",
        )
        # Event handlers run after the agent's member-event coalescer; wait for them too.
        handled: dict[str, float] = {}

        def handlers_done() -> bool:
            for line in self.events.read_text().splitlines():
                parts = line.split(" ", 2)  # "<time> <agent> <member>\t<addr>\t<role>\t<tags>"
                if len(parts) < 3 or not parts[2].startswith(origin.name + "\t"):
                    continue
                if tag in parts[2].split("\t")[-1].split(","):
                    handled.setdefault(parts[1], float(parts[0]))
            return len(handled) == self.n

        try:
            wait_for(handlers_done, 10, 0.1, "serf handlers")
            handler = max(handled.values()) - t0
        except BenchError:
            handler = None
        # Two upper bounds on when each agent learned the update: the read stamp of its log line
        # (late when this process is descheduled) and its handler's stamp minus the coalescer's
        # quiescent period (late by the handler's spawn time). The smaller is the tighter.
        learned = {n: min(t, handled.get(n, math.inf) - SERF_QUIESCENT) for n, t in arrived.items()}
        return Trial(
            total=max(learned.values()) - t0,
            local=learned[origin.name] - t0,
            logline=max(arrived.values()) - t0,
            handler=handler,
            handler_lag=[handled[n] - arrived[n] for n in handled],
            handler_tighter=sum(learned[n] < arrived[n] for n in arrived),
        )

    def stop(self) -> None:
        stop_processes([a.proc for a in self.agents])


def ensure_serf() -> str:
    """Install Debian's serf when missing; return its version line."""
    if shutil.which("serf") is None:
        print("serf not found; installing Debian's package (apt-get install -y serf)")
        cmd = ["apt-get", "install", "-y", "serf"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, check=True, capture_output=True)
    pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "serf"], capture_output=True, text=True).stdout
    binv = subprocess.run(["serf", "version"], capture_output=True, text=True).stdout.splitlines()
    return f"Debian package {pkg or '?'} (binary reports {binv[0] if binv else '?'})"

