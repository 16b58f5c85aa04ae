"""Ports and bytes on loopback: a free block of ports per system, iptables byte counters per range."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess

from .common import HOST, BenchError

# Our ports, Serf's gossip ports and Serf's RPC ports come from one free block below the
# ephemeral range (32768+), so no other process's client port falls in a counted range.
PORT_FLOOR, PORT_CEIL = 20000, 32000


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
