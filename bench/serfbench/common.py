"""What both sides of the Serf comparison share: the loopback host, errors, waiting, one trial's figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.wait import wait_until

HOST = "127.0.0.1"


class BenchError(RuntimeError):
    """A cluster did not start, converge or answer in time; the message says what was seen."""


def wait_for(check: Callable[[], object], timeout: float, every: float, what: str,
             describe: Callable[[], str] = lambda: "") -> None:
    """Call ``check`` every ``every`` s until it returns truthy; raise BenchError after ``timeout`` s."""
    if not wait_until(check, timeout=timeout, interval=every).ok:
        raise BenchError(f"{what}: not done after {timeout:.0f} s; {describe()}")


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
