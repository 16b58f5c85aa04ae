"""Our side of the comparison: N ``python -m node`` processes on consecutive loopback ports."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from harness.localnode import NodeProcess, cluster_of, stop_all
from harness.metrics import parse
from node.protocol import NODE_APP

from .common import HOST, BenchError, Trial, wait_for


class OurCluster:
    """N ``python -m node`` processes on consecutive ports, seeded with the first two."""

    name = "ours"

    def __init__(self, n: int, base_port: int, interval: float, fanout: int, tmp: str,
                 transport: str | None = None) -> None:
        self.n = n
        self.ports = [base_port + i for i in range(n)]
        self.addrs = [f"{HOST}:{p}" for p in self.ports]
        self.interval, self.fanout, self.transport = interval, fanout, transport
        self.folder = Path(tmp) / f"ours-{n}"
        self.procs: list[NodeProcess] = []
        self.http = requests.Session()
        self.pool = ThreadPoolExecutor(16)

    def start(self) -> None:
        """Start every node at once; each retries its seeds until they answer (see ``wait_converged``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        flags = ("--preset", "local", "--interval", str(self.interval), "--fanout", str(self.fanout),
                 "--log-level", "WARNING", *(("--transport", self.transport) if self.transport else ()))
        self.procs = cluster_of(self.n, *flags, folder=self.folder, ports=self.ports, prefix="o",
                                seeds=lambda i, addrs: [a for a in addrs[:2] if a != addrs[i]], wait=False)

    def wait_converged(self, timeout: float) -> None:
        """Wait until every node lists all N nodes as healthy."""
        counts: dict[str, int] = {}

        def count(addr: str) -> int:
            try:
                r = self.http.get(
                    f"http://{addr}/registry/list",
                    params={"app_name": NODE_APP, "status": "healthy"},
                    timeout=2,
                )
                return len(r.json())
            except (requests.RequestException, ValueError):
                return -1

        def check() -> bool:
            self._alive()
            counts.update(zip(self.addrs, self.pool.map(count, self.addrs), strict=True))
            return all(c == self.n for c in counts.values())

        wait_for(
            check,
            timeout,
            1.0,
            f"ours N={self.n} converged",
            lambda: (
                "nodes listing fewer than N: " + ", ".join(f"{a}={c}" for a, c in counts.items() if c != self.n)[:400]
            ),
        )

    def _alive(self) -> None:
        dead = [p for p in self.procs if not p.running()]
        if dead:
            raise BenchError(f"our nodes exited: {[p.address for p in dead]}; last output of {dead[0].name}:\n"
                             f"{dead[0].log_tail(600)}")

    def metric_bytes(self) -> int:
        """Sum of sd_gossip_bytes_sent_total + sd_gossip_bytes_received_total over all nodes."""
        return self.metric_sum("sd_gossip_bytes_sent_total", "sd_gossip_bytes_received_total")

    def metric_sum(self, *names: str) -> int:
        """Sum of the counters ``names`` over all nodes."""

        def one(addr: str) -> float:
            samples = parse(self.http.get(f"http://{addr}/metrics", timeout=2).text)
            return sum(samples.get(name, 0.0) for name in names)

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
        wait_for(
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
