"""Propagation time and at-rest traffic of our nodes next to HashiCorp Serf, on loopback.

For each cluster size N, starts N of our nodes (``python -m node --preset local``) and N Serf
agents (``serf agent -profile lan``) as processes on 127.0.0.1, both up at the same time, then:

1. at rest: counts the loopback bytes of each system for a quiet window with iptables byte
   counters on each system's port range (the same method for both), plus our own
   ``sd_gossip_bytes_*`` counters as a cross-check;
2. alternating trials: ours registers a new address at a random node and reads every node's
   ``seen_at`` for it; Serf runs ``serf tags -set`` at a random agent and stamps the
   ``serf: EventMemberUpdate`` log line of every agent as it arrives on the agent's stdout.
   Propagation time = last node's instant - the instant just before the request.

Serf's event handlers (``bench/serf_event.sh``) also record each agent's member-update; their
delay after the log line is reported, because the agent delivers member events to handlers
through a coalescer, so handler timestamps are not arrival times.

Usage (as root, for apt-get and iptables):
    .venv/bin/python bench/serf_compare.py [--nodes 10,25,50] [--repeats 10]
        [--interval 0.2] [--fanout 3] [--rest-seconds 15]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

ROOT = Path(__file__).resolve().parents[1]
HANDLER = Path(__file__).resolve().parent / "serf_event.sh"
HOST = "127.0.0.1"
# Our ports, Serf's gossip ports and Serf's RPC ports come from one free block below the
# ephemeral range (32768+), so no other process's client port falls in a counted range.
PORT_FLOOR, PORT_CEIL = 20000, 32000
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
THEORY_PUSH_PULL_F3 = {5: (1.3, 2), 10: (2.0, 3), 50: (3.2, 4), 100: (3.9, 4), 1000: (5.1, 6)}


class BenchError(RuntimeError):
    """A cluster did not start, converge or answer in time; the message says what was seen."""


def wait_until(check, timeout: float, every: float, what: str, describe=lambda: "") -> None:
    """Call ``check`` every ``every`` s until it returns truthy; raise BenchError after ``timeout`` s."""
    try:
        retrying = Retrying(stop=stop_after_delay(timeout), wait=wait_fixed(every), retry=retry_if_result(_falsy))
        retrying(check)
    except RetryError:
        raise BenchError(f"{what}: not done after {timeout:.0f} s; {describe()}") from None


def _falsy(value) -> bool:
    return not value


def free_block(size: int) -> int:
    """Return the first port of ``size`` consecutive ports free for TCP and UDP on HOST."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(PORT_FLOOR, PORT_CEIL - size)
        if all(_port_free(p) for p in range(base, base + size)):
            return base
    raise BenchError(f"no block of {size} free ports in {PORT_FLOOR}..{PORT_CEIL}")


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                return False
    return True


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Terminate the given processes, then kill whichever is still alive after 5 s."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 5
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def percentile(xs: list[float], q: float) -> float:
    """Return the q-quantile (0..1) by linear interpolation between order statistics."""
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    return xs[lo] + (xs[min(lo + 1, len(xs) - 1)] - xs[lo]) * (pos - lo)


def serf_model_rounds(n: int, fanout: int = 3, target: float = 0.9999) -> int:
    """Rounds Serf's convergence calculator gives for ``target`` of n nodes (no loss, no failures).

    Logistic model: informed(r) = 1 / (1 + (n+1) e^(-c n r)), c = (fanout / n) * 0.5.
    """
    c_n = fanout * 0.5
    return math.ceil(math.log((n + 1) * target / (1 - target)) / c_n)


# --------------------------------------------------------------------------- byte counters


class LoopbackBytes:
    """iptables byte counters for loopback traffic to or from named port ranges.

    One chain of our own, jumped to from the top of INPUT for ``-i lo``: each loopback packet
    crosses INPUT once, and the first rule it matches RETURNs, so a packet is counted once.
    Bytes are IP packet lengths (IP + TCP/UDP headers + payload, handshakes and ACKs included).
    """

    def __init__(self, ranges: dict[str, tuple[int, int]]) -> None:
        self.ranges = ranges
        self.chain = f"SERFCMP_{os.getpid()}"
        self.rules: list[str] = []  # system name per rule, in chain order
        self.active = False

    def __enter__(self) -> LoopbackBytes:
        if shutil.which("iptables") is None or os.geteuid() != 0:
            print("! iptables byte counters unavailable (need root and iptables); bytes from metrics only")
            return self
        self._ipt("-N", self.chain)
        self.active = True
        for name, (lo, hi) in self.ranges.items():
            for proto in ("tcp", "udp"):
                for direction in ("--dport", "--sport"):
                    self._ipt("-A", self.chain, "-p", proto, direction, f"{lo}:{hi}", "-j", "RETURN")
                    self.rules.append(name)
        self._ipt("-I", "INPUT", "1", "-i", "lo", "-j", self.chain)
        return self

    def __exit__(self, *exc) -> None:
        if not self.active:
            return
        for args in (("-D", "INPUT", "-i", "lo", "-j", self.chain), ("-F", self.chain), ("-X", self.chain)):
            subprocess.run(["iptables", "-w", *args], capture_output=True)
        self.active = False

    def read(self) -> dict[str, int]:
        """Return total bytes counted so far per range name (empty when unavailable)."""
        if not self.active:
            return {}
        out = self._ipt("-L", self.chain, "-v", "-n", "-x")
        counts = [int(line.split()[1]) for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()]
        if len(counts) != len(self.rules):
            raise BenchError(f"unexpected iptables listing of {self.chain}:\n{out}")
        totals: dict[str, int] = dict.fromkeys(self.ranges, 0)
        for name, n in zip(self.rules, counts, strict=True):
            totals[name] += n
        return totals

    @staticmethod
    def _ipt(*args: str) -> str:
        r = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"iptables {' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout


# --------------------------------------------------------------------------- trials


@dataclass
class Trial:
    """One propagation measurement: seconds from the request to each node having it."""

    total: float  # last node
    local: float  # the node that took the request
    logline: float | None = None  # Serf only: last agent, from its log line alone
    handler: float | None = None  # Serf only: last event-handler run
    handler_lag: list[float] = field(default_factory=list)  # Serf only: handler time - log line, per agent
    handler_tighter: int = 0  # Serf only: agents whose handler bound beat their log-line stamp

    @property
    def spread(self) -> float:
        """Seconds from the first node having it to the last: the request's own cost left out."""
        return self.total - self.local


class OurCluster:
    """N ``python -m node`` processes on consecutive ports, seeded with the first two."""

    name = "ours"

    def __init__(self, n: int, base_port: int, interval: float, fanout: int, tmp: str) -> None:
        self.n = n
        self.addrs = [f"{HOST}:{base_port + i}" for i in range(n)]
        self.interval, self.fanout, self.tmp = interval, fanout, tmp
        self.procs: list[subprocess.Popen] = []
        self.http = requests.Session()
        self.pool = ThreadPoolExecutor(16)

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for i, addr in enumerate(self.addrs):
            seeds = ",".join(a for a in self.addrs[:2] if a != addr)
            args = [
                sys.executable,
                "-m",
                "node",
                "--preset",
                "local",
                "--port",
                addr.rsplit(":", 1)[1],
                "--interval",
                str(self.interval),
                "--fanout",
                str(self.fanout),
                "--db",
                f"{self.tmp}/ours-{self.n}-{i}.db",
                "--log-level",
                "WARNING",
                "--name",
                f"o{i}",
            ]
            if seeds:
                args += ["--seeds", seeds]
            with open(f"{self.tmp}/ours-{self.n}-{i}.log", "wb") as log:  # the child keeps its own copy
                self.procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))

    def wait_converged(self, timeout: float) -> None:
        """Wait until every node lists all N nodes as healthy."""
        counts: dict[str, int] = {}

        def count(addr: str) -> int:
            try:
                r = self.http.get(
                    f"http://{addr}/registry/list",
                    params={"app_name": "service-discovery", "status": "healthy"},
                    timeout=2,
                )
                return len(r.json())
            except (requests.RequestException, ValueError):
                return -1

        def check() -> bool:
            self._alive()
            counts.update(zip(self.addrs, self.pool.map(count, self.addrs), strict=True))
            return all(c == self.n for c in counts.values())

        wait_until(
            check,
            timeout,
            1.0,
            f"ours N={self.n} converged",
            lambda: (
                "nodes listing fewer than N: " + ", ".join(f"{a}={c}" for a, c in counts.items() if c != self.n)[:400]
            ),
        )

    def _alive(self) -> None:
        dead = [a for a, p in zip(self.addrs, self.procs, strict=True) if p.poll() is not None]
        if dead:
            i = self.addrs.index(dead[0])
            tail = Path(f"{self.tmp}/ours-{self.n}-{i}.log").read_text(errors="replace")[-600:]
            raise BenchError(f"our nodes exited: {dead}; last output of {dead[0]}:\n{tail}")

    def metric_bytes(self) -> int:
        """Sum of sd_gossip_bytes_sent_total + sd_gossip_bytes_received_total over all nodes."""

        def one(addr: str) -> float:
            text = self.http.get(f"http://{addr}/metrics", timeout=2).text
            return sum(float(m) for m in re.findall(r"^sd_gossip_bytes_(?:sent|received)_total (\S+)$", text, re.M))

        return int(sum(self.pool.map(one, self.addrs)))

    def trial(self, k: int, rng: random.Random, timeout: float) -> Trial:
        """Register a fresh address at a random node; read every node's seen_at for it."""
        address = f"10.{77 + self.n % 100}.{k // 250}.{k % 250 + 1}:80"
        origin = rng.randrange(self.n)
        seen: dict[str, float] = {}
        t0 = time.time()
        r = self.http.post(
            f"http://{self.addrs[origin]}/registry/register_instance",
            json={"address": address, "app_name": "bench"},
            timeout=2,
        )
        r.raise_for_status()

        def seen_at(addr: str) -> float | None:
            try:
                e = self.http.get(f"http://{addr}/registry/entries", timeout=2).json().get(address)
            except (requests.RequestException, ValueError):
                return None
            return e["seen_at"] if e else None

        def check() -> bool:
            missing = [a for a in self.addrs if a not in seen]
            for addr, t in zip(missing, self.pool.map(seen_at, missing), strict=True):
                if t is not None:
                    seen[addr] = t
            return len(seen) == self.n

        # seen_at is stamped by each node, so polling late and slowly loses no precision
        # and keeps the poller's load off the nodes while the update spreads.
        time.sleep(0.3)
        wait_until(
            check,
            timeout,
            0.3,
            f"ours N={self.n} trial {k}: {address} everywhere",
            lambda: f"missing at {sorted(set(self.addrs) - set(seen))[:10]}",
        )
        return Trial(total=max(seen.values()) - t0, local=seen[self.addrs[origin]] - t0)

    def stop(self) -> None:
        stop_all(self.procs)
        self.pool.shutdown(wait=False, cancel_futures=True)


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
                wait_until(
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

        wait_until(
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

        wait_until(
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
            wait_until(handlers_done, 10, 0.1, "serf handlers")
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
        stop_all([a.proc for a in self.agents])


# --------------------------------------------------------------------------- main


@dataclass
class Result:
    """Everything measured for one system at one N."""

    system: str
    n: int
    trials: list[Trial] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # trials not seen everywhere in time
    bytes_per_node_s: float | None = None  # iptables, in+out of one node
    metric_bytes_per_node_s: float | None = None  # ours only, from /metrics

    def stat(self, attr: str, q: float) -> float | None:
        xs = [x for t in self.trials if (x := getattr(t, attr)) is not None]
        return percentile(xs, q) if xs else None


def measure_n(
    n: int, args, ports: dict[str, int], counter: LoopbackBytes, profile: str, rng: random.Random, tmp: str
) -> tuple[Result, Result]:
    ours = OurCluster(n, ports["ours"], args.interval, args.fanout, tmp)
    serf = SerfCluster(n, ports["serf"], ports["rpc"], profile, tmp)
    res_o, res_s = Result("ours", n), Result("serf", n)
    try:
        t_start = time.monotonic()
        serf.start()
        ours.start()
        serf.wait_converged(120)
        ours.wait_converged(180)
        print(f"  N={n}: both clusters converged in {time.monotonic() - t_start:.1f} s; settling {args.settle:.0f} s")
        time.sleep(args.settle)

        # At rest: our metrics around the window, iptables inside it, so scrapes are not counted.
        m0, w0 = ours.metric_bytes(), time.monotonic()
        c0 = counter.read()
        time.sleep(args.rest_seconds)
        c1, w1 = counter.read(), time.monotonic()
        m1, w2 = ours.metric_bytes(), time.monotonic()
        if c0:
            # Each loopback packet is counted once; it leaves one node and enters another.
            res_o.bytes_per_node_s = 2 * (c1["ours"] - c0["ours"]) / n / (w1 - w0)
            res_s.bytes_per_node_s = 2 * (c1["serf"] - c0["serf"]) / n / (w1 - w0)
        res_o.metric_bytes_per_node_s = (m1 - m0) / n / (w2 - w0)

        # Alternate the systems trial by trial, in random order, so both see the same noise.
        for k in range(args.repeats):
            order = [(ours, res_o), (serf, res_s)]
            rng.shuffle(order)
            for cluster, res in order:
                time.sleep(rng.uniform(0.3, 0.8))  # a random phase against both gossip timers
                try:
                    res.trials.append(cluster.trial(k, rng, args.trial_timeout))
                except BenchError as exc:  # one slow trial on a loaded machine is data, not a crash
                    res.failures.append(str(exc))
    finally:
        ours.stop()
        serf.stop()
    return res_o, res_s


def fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}{unit}"


def report(results: list[tuple[Result, Result]], args, profile: str) -> None:
    iv = args.interval
    print()
    print(f"Propagation: seconds from request to the last of N nodes; {args.repeats} trials per system and N.")
    print("  local = median time until the node that took the request has it (HTTP POST for ours, `serf tags` CLI")
    print("  + RPC for Serf); spread = median of (last - local): the dissemination alone, ratio ours/serf at right")
    hdr = (
        f"{'system':<15} {'N':>3} {'median':>7} {'p95':>7} {'max':>7} {'rounds':>6} {'local':>6}"
        f" {'spread':>6} {'ours/serf med':>13} {'ours/serf p95':>13} {'spread':>6} {'B/node/s':>9} {'(metrics)':>9}"
    )
    print(hdr)
    print("-" * len(hdr))
    for o, s in results:
        for res, label in ((o, "ours"), (s, "serf")):
            if not res.trials:
                print(f"{label:<15} {res.n:>3} no trial completed")
                continue
            med, p95 = res.stat("total", 0.5), res.stat("total", 0.95)
            ratio_m = ratio_p = ratio_s = ""
            if res is o and s.trials:
                ratio_m = f"{med / s.stat('total', 0.5):.2f}"
                ratio_p = f"{p95 / s.stat('total', 0.95):.2f}"
                ratio_s = f"{o.stat('spread', 0.5) / s.stat('spread', 0.5):.2f}"
            print(
                f"{label:<15} {res.n:>3} {fmt(med):>7} {fmt(p95):>7} {fmt(res.stat('total', 1.0)):>7}"
                f" {med / iv:>6.1f} {fmt(res.stat('local', 0.5)):>6} {fmt(res.stat('spread', 0.5)):>6}"
                f" {ratio_m:>13} {ratio_p:>13} {ratio_s:>6}"
                f" {fmt(res.bytes_per_node_s, '', 0):>9} {fmt(res.metric_bytes_per_node_s, '', 0):>9}"
            )
        for attr, label in (("logline", "serf log line"), ("handler", "serf handler")):
            m, p = s.stat(attr, 0.5), s.stat(attr, 0.95)
            print(
                f"{label:<15} {s.n:>3} {fmt(m):>7} {fmt(p):>7} {fmt(s.stat(attr, 1.0)):>7}"
                f" {'':>6} {'':>6} {'':>6} {fmt(o.stat('total', 0.5) / m if m and o.trials else None):>13}"
                f" {fmt(o.stat('total', 0.95) / p if p and o.trials else None):>13}"
            )
    failures = [f for pair in results for r in pair for f in r.failures]
    if failures:
        print(f"\nFailed trials (left out of the figures above): {len(failures)}")
        for f in failures:
            print(f"  {f}")
    lags = [x for _, s in results for t in s.trials for x in t.handler_lag]
    print()
    print(
        "serf = per agent, the earlier of two upper bounds on when it learned the tag: its"
        " `serf: EventMemberUpdate` log line stamped when read from its stdout (serf log line), and its"
        f" member-update handler's `date` minus the coalescer's {SERF_QUIESCENT:g} s quiescent period."
    )
    if lags:
        tighter = sum(t.handler_tighter for _, s in results for t in s.trials)
        print(
            f"Serf handler time - log line ({len(lags)} agent-trials): median {statistics.median(lags) * 1000:.0f} ms,"
            f" p95 {percentile(lags, 0.95) * 1000:.0f} ms, min {min(lags) * 1000:.0f} ms,"
            f" max {max(lags) * 1000:.0f} ms; the handler bound was the tighter in {tighter} of {len(lags)}"
        )
        print(
            "  (handlers see member events only after the agent's coalescer: handler timestamps alone"
            f" would add ~{SERF_QUIESCENT:g} s to Serf; the spawn itself costs the part above {SERF_QUIESCENT:g} s)"
        )
    print()
    print(
        "Bytes per node per second at rest (in+out of one node, averaged over nodes): iptables byte"
        f" counters on loopback for each system's ports over {args.rest_seconds:.0f} s, IP+TCP/UDP headers"
        " included; (metrics) = ours from sd_gossip_bytes_{sent,received}_total, HTTP payload+headers only."
    )
    print()
    print("Reference (REFERENCE.md), at this interval:")
    for o, _ in results:
        n = o.n
        r = serf_model_rounds(n, args.fanout)
        line = f"  N={n:>3}: Serf convergence calculator, 99.99% informed: {r} rounds = {r * 0.2:.1f} s at 200 ms"
        if n in THEORY_PUSH_PULL_F3:
            mean, p99 = THEORY_PUSH_PULL_F3[n]
            line += f"; synchronous push-pull f=3: mean {mean} / p99 {p99} rounds = {mean * iv:.2f} / {p99 * iv:.2f} s"
        print(line)
    print(
        "  (Serf's calculator at N=30: 9 rounds = 1.8 s; memberlist retransmits a broadcast"
        " 4 x log10(N+1) times, piggybacked on gossip to 3 nodes every 200 ms)"
    )


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="10,25,50", help="comma-separated cluster sizes")
    ap.add_argument("--repeats", type=int, default=10, help="trials per system and N")
    ap.add_argument("--interval", type=float, default=0.2, help="our gossip interval, seconds")
    ap.add_argument("--fanout", type=int, default=3, help="our peers per round")
    ap.add_argument("--rest-seconds", type=float, default=15.0, help="at-rest window for bytes")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after convergence before measuring")
    ap.add_argument("--trial-timeout", type=float, default=20.0, help="bound on one propagation trial")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    sizes = [int(x) for x in args.nodes.split(",") if x.strip()]
    if not sizes or min(sizes) < 2 or args.repeats < 1:
        ap.error("need sizes >= 2 and repeats >= 1")

    profile = {0.2: "lan", 0.1: "local"}.get(round(args.interval, 3), "lan")
    if SERF_PROFILES[profile]["GossipInterval"] != args.interval:
        print(
            f"! Serf cannot run at {args.interval} s: its gossip interval comes only from -profile;"
            f" using -profile {profile} ({SERF_PROFILES[profile]['GossipInterval']} s)"
        )
    # SIGTERM takes the same way out as Ctrl-C, through every finally below.
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"Serf: {ensure_serf()}; agent flag -profile {profile} -> memberlist "
        + ", ".join(f"{k} {v:g}{'' if k == 'GossipNodes' else ' s'}" for k, v in SERF_PROFILES[profile].items())
    )
    print("  (Serf 0.9 exposes no gossip-interval flag or config key; -profile selects memberlist's preset)")
    print(
        f"Ours: python -m node --preset local --interval {args.interval} --fanout {args.fanout};"
        f" seeds = first two nodes. Machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )

    rng = random.Random(args.seed)
    top = max(sizes)
    base = free_block(3 * top)
    ports = {"ours": base, "serf": base + top, "rpc": base + 2 * top}
    ranges = {"ours": (base, base + top - 1), "serf": (base + top, base + 2 * top - 1)}
    print(
        f"Ports: ours {ranges['ours'][0]}-{ranges['ours'][1]}, serf {ranges['serf'][0]}-{ranges['serf'][1]},"
        f" serf rpc {ports['rpc']}-{ports['rpc'] + top - 1} (not counted)"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="serf-compare-") as tmp, LoopbackBytes(ranges) as counter:
        try:
            for n in sizes:
                results.append(measure_n(n, args, ports, counter, profile, rng, tmp))
        except KeyboardInterrupt:
            print("interrupted; cleaned up")
        finally:
            if results:
                report(results, args, profile)


if __name__ == "__main__":
    main()
