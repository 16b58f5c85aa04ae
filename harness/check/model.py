"""The settings of one check and the names shared by its modules (no I/O)."""

from __future__ import annotations

import dataclasses

# Every fault kind the nemesis knows, in the order they are listed to users.
FAULT_KINDS = ("halves", "isolate", "ring", "bridge", "one-way", "kill", "pause", "loss", "skew", "delay")
# Faults on the network between nodes; ``heal`` removes every one of them.
NETWORK_KINDS = frozenset({"halves", "isolate", "ring", "bridge", "one-way", "loss", "delay"})
# Operation outcomes: done, definitely not done, and unknown.
OK, REFUSED, INDETERMINATE = "ok", "refused", "indeterminate"
# Operations a client performs.
REGISTER, RENEW, DEREGISTER = "register", "renew", "deregister"
WRITES = frozenset({REGISTER, RENEW})


@dataclasses.dataclass(frozen=True)
class Settings:
    """What one check runs: where, how big, how long, how fast, which faults, which seed."""

    backend: str = "sim"                 # "sim", "docker" or "swarm"
    nodes: int = 5                       # cluster size N
    duration: float = 30.0               # seconds of workload and faults (virtual in the simulator)
    rate: float = 10.0                   # client operations per second, all clients together
    seed: int = 0                        # draws the workload, the fault schedule and the simulator
    faults: tuple[str, ...] = FAULT_KINDS  # fault kinds to mix (those the backend cannot apply are skipped)
    interval: float = 0.2                # seconds between gossip rounds
    ttl: float = 10.0                    # lease of a registration, seconds (nodes' SD_TTL)
    grace: float = 10.0                  # seconds an expired registration is still listed (SD_EXPIRE_GRACE)
    fault_s: float = 4.0                 # how long each fault stays applied
    quiet_s: float = 2.0                 # healthy seconds between two faults
    poll_s: float = 0.5                  # seconds between two polls of every node's view (Docker)
    name: str = "check"                  # cluster name (Docker)
    image: str = "sd-node:latest"        # node image (Docker)

    @property
    def settle_timeout(self) -> float:
        """Bound on the wait for convergence after the final heal: one lease.

        Waiting longer would let unrenewed copies expire everywhere, which makes nodes
        agree without the gossip having done its work (a tombstone that never spread, a
        registration never passed on) and would hide exactly what the check looks for.
        """
        return self.ttl

    @property
    def renew_every(self) -> float:
        """Seconds after which a client renews a live registration: a third of the lease."""
        return self.ttl / 3

    def to_json(self) -> dict:
        """The settings as JSON-ready values."""
        out = dataclasses.asdict(self)
        out["faults"] = list(self.faults)
        return out
