"""What an experiment runs and records: the ``Sweep`` of settings, one ``Trial``, the CSV columns."""

from __future__ import annotations

import dataclasses
import math

from ..errors import HarnessError
from ..topology import sort_nodes

BACKENDS = ("sim", "docker")
SIM_MODES = ("async", "sync")
FAULTS = ("none", "partition-heal", "kill-restart")
# Docker runs only at these sizes unless told otherwise (2 shared cores on the test host).
DOCKER_MAX_NODES = 40
# Sim and Docker agree when their mean rounds differ by less than this share of the sim's.
AGREEMENT = 0.25
# app_name under which every node registers itself (membership = these entries).

CSV_COLUMNS = (
    "backend", "mode", "n", "fanout", "interval", "loss", "fault", "repeat", "trial", "seed",
    "origin", "node", "is_origin", "informed", "round", "round_frac", "seconds", "node_round",
    "trial_rounds_to_all", "trial_seconds_to_all", "trial_exchanges", "trial_bytes",
    "trial_window_s", "trial_bytes_per_node_s", "trial_round_rate",
)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What to run: every combination of the lists, ``repeats`` trials each."""

    nodes: tuple[int, ...] = (5, 10, 20, 40)
    fanouts: tuple[int, ...] = (3,)
    interval: float = 0.2          # seconds between gossip rounds (both backends)
    loss: float = 0.0              # percent of messages (sim) / packets (docker) dropped
    fault: str = "none"            # none | partition-heal | kill-restart
    repeats: int = 3               # trials per combination
    seed: int = 0                  # seeds every random choice of the harness and the sim
    backends: tuple[str, ...] = ("sim",)
    sim_modes: tuple[str, ...] = ("async",)
    docker_nodes: tuple[int, ...] | None = None  # N for Docker; None = those of ``nodes`` <= 40
    fault_rounds: int = 5          # rounds after the registration at which the fault is undone
    trial_rounds: int = 200        # sim: give up a trial after this many rounds
    trial_timeout: float = 30.0    # docker: give up a trial after this many seconds
    ready_timeout: float = 60.0    # docker: seconds to wait for full membership before a trial
    start_timeout: float = 60.0    # docker: seconds every container gets to answer /health
    rest_rounds: int = 10          # length of the at-rest traffic window, in rounds
    image: str = "sd-node:latest"
    name: str = "exp"              # prefix of the Docker cluster names

    def __post_init__(self):
        for b in self.backends:
            if b not in BACKENDS:
                raise HarnessError(f"unknown backend {b!r}; use {', '.join(BACKENDS)}")
        for m in self.sim_modes:
            if m not in SIM_MODES:
                raise HarnessError(f"unknown sim mode {m!r}; use {', '.join(SIM_MODES)}")
        if self.fault not in FAULTS:
            raise HarnessError(f"unknown fault {self.fault!r}; use {', '.join(FAULTS)}")
        if any(n < 2 for n in self.nodes) or any(f < 1 for f in self.fanouts):
            raise HarnessError("every N must be >= 2 and every fanout >= 1")
        if self.fault == "kill-restart" and min(self.nodes) < 3:
            raise HarnessError("kill-restart needs N >= 3 (a victim besides the registering node)")
        if not 0 <= self.loss < 100 or self.interval <= 0 or self.repeats < 1:
            raise HarnessError("need 0 <= loss < 100, interval > 0 and repeats >= 1")

    def docker_sizes(self) -> tuple[int, ...]:
        """N values the Docker backend runs."""
        if "docker" not in self.backends:
            return ()
        if self.docker_nodes is not None:
            return tuple(self.docker_nodes)
        return tuple(n for n in self.nodes if n <= DOCKER_MAX_NODES)

    def sim_sizes(self) -> tuple[int, ...]:
        """N values the simulator runs."""
        return tuple(self.nodes) if "sim" in self.backends else ()

    def total_trials(self) -> int:
        """Trials the whole sweep runs, over both backends and every sim mode."""
        per = len(self.fanouts) * self.repeats
        return per * (len(self.sim_sizes()) * len(self.sim_modes) + len(self.docker_sizes()))


@dataclasses.dataclass
class Trial:
    """One registration and when each node first held it."""

    backend: str
    mode: str                       # async | sync (sim), real (docker)
    n: int
    fanout: int
    interval: float
    loss: float
    fault: str
    repeat: int
    seed: int
    origin: str
    address: str
    rounds: dict[str, int | None]   # round each node first held it in (origin: 0)
    rounds_frac: dict[str, float | None]
    seconds: dict[str, float | None]   # seconds after the origin stored it
    node_rounds: dict[str, int | None]  # the node's own gossip-round counter (not aligned)
    exchanges: int                  # gossip exchanges started during the window
    bytes: int                      # gossip bytes during the window
    window: float                   # seconds the counters cover (virtual in the sim)
    wall: float                     # harness wall-clock seconds the trial took
    faults: list[dict] = dataclasses.field(default_factory=list)  # {"event", "t" (s), "round"}
    # gossip rounds a node actually ran per second during the window (sim: 1 / interval);
    # below 1 / interval when rounds overran their interval (a CPU-bound host) and ticks were skipped
    round_rate: float | None = None

    @property
    def complete(self) -> bool:
        """Whether every node held the registration before the trial ended."""
        return all(r is not None for r in self.rounds.values())

    @property
    def rounds_to_all(self) -> int | None:
        return _max(self.rounds) if self.complete else None

    @property
    def rounds_frac_to_all(self) -> float | None:
        return _max(self.rounds_frac) if self.complete else None

    @property
    def seconds_to_all(self) -> float | None:
        return _max(self.seconds) if self.complete else None

    @property
    def undone_at(self) -> float | None:
        """Seconds after the registration at which the fault was fully undone (None: no fault)."""
        ends = [f["t"] for f in self.faults if f["event"] in ("healed", "started")]
        ends = ends or [f["t"] for f in self.faults if f["event"] in ("heal", "start")]
        return max(ends) if ends else None

    @property
    def seconds_after_undo(self) -> float | None:
        """Seconds from the fault's end until every node held it: gossip time without the fault mechanics."""
        if self.undone_at is None or self.seconds_to_all is None:
            return None
        return max(0.0, self.seconds_to_all - self.undone_at)

    @property
    def rounds_run_to_all(self) -> float | None:
        """Seconds to all times the measured round rate: the rounds the nodes really ran."""
        if self.seconds_to_all is None or self.round_rate is None:
            return None
        return self.seconds_to_all * self.round_rate

    @property
    def bytes_per_node_s(self) -> float | None:
        return self.bytes / self.n / self.window if self.window > 0 else None

    def key(self) -> tuple:
        """The group this trial belongs to: (backend, mode, N, fanout, interval, loss, fault)."""
        return group_key(self.backend, self.mode, self.n, self.fanout, self.interval, self.loss, self.fault)

    def rows(self, trial_id: int) -> list[dict]:
        """CSV rows: one per node."""
        common = {
            "backend": self.backend, "mode": self.mode, "n": self.n, "fanout": self.fanout,
            "interval": self.interval, "loss": self.loss, "fault": self.fault, "repeat": self.repeat,
            "trial": trial_id, "seed": self.seed, "origin": self.origin,
            "trial_rounds_to_all": self.rounds_to_all, "trial_seconds_to_all": rounded(self.seconds_to_all),
            "trial_exchanges": self.exchanges, "trial_bytes": self.bytes, "trial_window_s": rounded(self.window),
            "trial_bytes_per_node_s": rounded(self.bytes_per_node_s), "trial_round_rate": rounded(self.round_rate),
        }
        return [{
            **common, "node": node, "is_origin": node == self.origin,
            "informed": self.rounds[node] is not None, "round": self.rounds[node],
            "round_frac": rounded(self.rounds_frac[node]), "seconds": rounded(self.seconds[node]),
            "node_round": self.node_rounds.get(node),
        } for node in sort_nodes(self.rounds)]


def _max(values: dict):
    """Largest value of a complete per-node mapping."""
    return max(v for v in values.values() if v is not None)


def group_key(backend, mode, n, fanout, interval, loss, fault) -> tuple:
    """Normalised key of a group of trials with the same settings."""
    return (backend, mode, int(n), int(fanout), float(interval), float(loss), fault)


def rounded(x: float | None, digits: int = 4) -> float | None:
    """``round(x, digits)``, None passed through."""
    return None if x is None else round(x, digits)


def round_of(frac: float) -> int:
    """Round a node holds the update in: the ceiling of the fractional round (origin: 0)."""
    return max(0, math.ceil(frac - 1e-9))


def probe_address(seed: int, index: int) -> str:
    """A fresh instance address per trial (never registered before in this run)."""
    return f"10.{200 + seed % 50}.{index // 250}.{index % 250 + 1}:8080"
