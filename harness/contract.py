"""The operations every cluster offers: Docker containers, the simulator and test fakes.

Scenarios, experiments and the CLI are written against ``ClusterLike`` only, so each
is written once and runs on every backend. Node names are ``n1..nN``; addresses are
``host:port`` strings as the registry stores them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from .convergence import Report


@runtime_checkable
class ClusterLike(Protocol):
    """A running cluster of registry nodes that can be written to, read, faulted and waited on."""

    @property
    def nodes(self) -> list[str]:
        """Every node's name, n1..nN in numeric order, running or not."""
        ...

    def register(self, node: str, address: str, app_name: str, last_update: int | None = None) -> dict:
        """Register (or renew) ``address`` at ``node``; the node's JSON answer."""
        ...

    def deregister(self, node: str, address: str) -> dict:
        """Delete ``address`` at ``node`` (a tombstone that spreads); the node's JSON answer."""
        ...

    def views(self, nodes: Iterable[str] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
        """Each reachable node's ``/registry/list``: address -> {app_name, last_update, status, ...}."""
        ...

    def digests(self, nodes: Iterable[str] | None = None) -> dict[str, tuple[str, int]]:
        """Each reachable node's (digest, entries); equal digests everywhere = converged."""
        ...

    def partition(self, groups: Sequence[Iterable[str]]) -> Any:
        """Cut the cluster into ``groups`` (nodes in none form one more group); replaces earlier cuts."""
        ...

    def isolate(self, node: str) -> Any:
        """Cut ``node`` off from every other node."""
        ...

    def partition_one_way(self, src: str, dst: str) -> None:
        """Drop what ``src`` starts towards ``dst``; ``dst`` still reaches ``src``."""
        ...

    def heal(self) -> None:
        """Remove every network fault (cuts, one-way cuts, loss)."""
        ...

    def kill(self, node: str) -> None:
        """Stop ``node`` at once (SIGKILL); its data survives for ``start``."""
        ...

    def start(self, node: str) -> None:
        """Start a killed or stopped ``node`` again on its old data."""
        ...

    def pause(self, node: str) -> Any:
        """Freeze ``node``: it keeps its sockets but answers nothing."""
        ...

    def unpause(self, node: str) -> None:
        """Thaw a paused ``node``."""
        ...

    def skew(self, node: str, seconds: float) -> None:
        """Set ``node``'s wall-clock offset to ``seconds``."""
        ...

    def wait_converged(
        self,
        timeout: float = 30.0,
        nodes: Iterable[str] | None = None,
        expect_present: Iterable[str] = (),
        expect_absent: Iterable[str] = (),
    ) -> Report:
        """Wait until ``nodes`` (default: all live) agree; raise ``ConvergenceTimeout`` saying who lags."""
        ...

    def settle(self, seconds: float) -> None:
        """Let ``seconds`` pass (wall time in Docker, virtual time in the simulator)."""
        ...


@runtime_checkable
class ManagedCluster(ClusterLike, Protocol):
    """A cluster the command line manages: ClusterLike plus lifecycle, URLs and per-node network faults.

    Docker clusters are; the simulator is not (it has no URLs, and its loss is cluster-wide).
    """

    def up(self) -> Any:
        """Start every node and wait until each answers /health."""
        ...

    def down(self) -> dict:
        """Remove everything the cluster made; counts of containers, volumes and networks removed."""
        ...

    def status(self) -> dict:
        """{"cluster", "converged", "nodes": [{name, url, state, entries, digest, status}]}."""
        ...

    def url(self, node: str) -> str:
        """Base URL of ``node``'s HTTP API from the host."""
        ...

    def stop(self, node: str) -> None:
        """Stop ``node`` gracefully; its data survives for ``start``."""
        ...

    def restart(self, node: str) -> None:
        """Stop and start ``node``, waiting until it answers again."""
        ...

    def loss(self, node: str, percent: float) -> None:
        """Drop ``percent`` % of the packets ``node`` receives (0 removes the loss)."""
        ...

    def delay(self, node: str, ms: float) -> None:
        """Delay ``node``'s outgoing packets by ``ms`` milliseconds (0 removes the delay)."""
        ...
