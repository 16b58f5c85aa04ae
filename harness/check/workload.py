"""The clients' operations, drawn once from a seed: register, renew and deregister on two address pools.

Client ``k`` talks to node ``nodes[k]`` (one client per node). Each client owns a few
*single-writer* addresses that only it writes; a few *shared* addresses are written by
every client, so concurrent writes to one address happen at different nodes. Operations
arrive at ``rate`` per second, evenly spaced. Each one either renews the live
registration renewed least recently, when it is older than ``renew_every`` (so the live
set keeps its leases and a registration is never expected to expire), or picks an
address at random: a register when the plan believes it absent, else a renew or a
deregister. The plan is pure: the same seed gives the same operations.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from .model import DEREGISTER, REGISTER, RENEW

OWN_PER_CLIENT = 2   # single-writer addresses per client
SHARED = 4           # addresses every client writes
SHARED_SHARE = 0.3   # share of the random operations that go to a shared address
DEREGISTER_SHARE = 0.35  # share of the random operations on a live address that deregister it


@dataclasses.dataclass(frozen=True)
class Op:
    """One planned client operation."""

    index: int    # position in the plan
    t: float      # seconds after the start when it is due
    client: int   # which client performs it
    node: str     # the node that client talks to
    op: str       # register, renew or deregister
    address: str  # the instance's host:port
    app: str      # its app name


def own_address(client: int, i: int) -> str:
    """The ``i``-th address only ``client`` writes."""
    return f"10.1.{client}.{i + 1}:8080"


def shared_address(j: int) -> str:
    """The ``j``-th address every client writes."""
    return f"10.2.0.{j + 1}:8080"


def app_of(address: str) -> str:
    """The app name an address is registered under (fixed per address)."""
    return "shared" if address.startswith("10.2.") else "own-" + address.split(".")[2]


def pools(clients: int) -> tuple[dict[str, int], list[str]]:
    """The single-writer addresses (address -> owner) and the shared ones."""
    own = {own_address(c, i): c for c in range(clients) for i in range(OWN_PER_CLIENT)}
    return own, [shared_address(j) for j in range(SHARED)]


class Workload:
    """Draws a plan of operations for clients bound to ``nodes``."""

    def __init__(self, nodes: Sequence[str], rng: random.Random, renew_every: float) -> None:
        self.nodes, self.rng, self.renew_every = list(nodes), rng, renew_every
        self.own, self.shared = pools(len(self.nodes))
        self.live: dict[str, float] = {}  # address believed registered -> when last written

    def plan(self, duration: float, rate: float) -> list[Op]:
        """Every operation due within ``duration`` seconds at ``rate`` per second."""
        ops = []
        for i in range(int(duration * rate)):
            t = round(i / rate, 4)
            client, op, address = self._renewal(t) or self._random()
            if op == DEREGISTER:
                self.live.pop(address, None)
            else:
                self.live[address] = t
            ops.append(Op(i, t, client, self.nodes[client], op, address, app_of(address)))
        return ops

    def _renewal(self, t: float) -> tuple[int, str, str] | None:
        """The renewal of the stalest live registration, when it is due."""
        if not self.live:
            return None
        address, written = min(self.live.items(), key=lambda kv: (kv[1], kv[0]))
        if t - written < self.renew_every:
            return None
        return self._writer(address), RENEW, address

    def _writer(self, address: str) -> int:
        owner = self.own.get(address)
        return owner if owner is not None else self.rng.randrange(len(self.nodes))

    def _random(self) -> tuple[int, str, str]:
        if self.rng.random() < SHARED_SHARE:
            address = self.rng.choice(self.shared)
        else:
            address = self.rng.choice(sorted(self.own))
        client = self._writer(address)
        if address not in self.live:
            return client, REGISTER, address
        return client, DEREGISTER if self.rng.random() < DEREGISTER_SHARE else RENEW, address
