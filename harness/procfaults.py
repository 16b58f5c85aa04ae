"""Process faults on nodes (kill, stop, start, restart, pause, unpause), each checked for effect.

The backend does the deed; this module checks the node reached the state the
fault promises (exited, paused, healthy again, SIGSTOP'd) and raises
``FaultNotApplied`` when it did not, then records the fault on the timeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .backends import Backend, Node
from .errors import FaultNotApplied
from .timeline import Timeline


class ProcessFaults:
    """Process faults of one cluster's nodes through ``backend``."""

    def __init__(self, backend: Backend, node: Callable[[str], Node], wait_healthy: Callable[[Sequence[str]], None],
                 stopped: Callable[[str], bool], timeline: Timeline):
        self.backend = backend
        self.node = node                    # node name -> Node (raises NodeNotFound)
        self.wait_healthy = wait_healthy    # waits until the nodes answer /health, or raises NodeStartError
        self.stopped = stopped              # whether the node's process is SIGSTOP'd
        self.timeline = timeline

    def _expect_state(self, node: str, states: set[str], action: str) -> None:
        got = self.backend.state(self.node(node))
        if got not in states:
            raise FaultNotApplied(f"{action} {node}: container is {got}, expected {' or '.join(sorted(states))}")

    def kill(self, node: str) -> None:
        """SIGKILL the node's process; it must be exited (or dead) afterwards."""
        self.backend.kill(self.node(node))
        self._expect_state(node, {"exited", "dead"}, "kill")
        self.timeline.record("kill", node=node)

    def stop(self, node: str, timeout: int = 10) -> None:
        """SIGTERM, SIGKILL after ``timeout`` s; the node must be exited afterwards."""
        self.backend.stop(self.node(node), timeout)
        self._expect_state(node, {"exited"}, "stop")
        self.timeline.record("stop", node=node)

    def start(self, node: str) -> None:
        """Start a stopped node; it must answer /health."""
        self.backend.start(self.node(node))
        self.wait_healthy([node])
        self.timeline.record("start", node=node, local_faults_reset=True)

    def restart(self, node: str, timeout: int = 10) -> None:
        """Restart the node; it must answer /health."""
        self.backend.restart(self.node(node), timeout)
        self.wait_healthy([node])
        self.timeline.record("restart", node=node, local_faults_reset=True)

    def pause(self, node: str) -> str:
        """Freeze the node (freezer, else SIGSTOP); it must be paused or its process stopped."""
        method = self.backend.pause(self.node(node))
        if method == "freezer":
            self._expect_state(node, {"paused"}, "pause")
        elif not self.stopped(node):
            raise FaultNotApplied(f"pause {node}: SIGSTOP sent but the node process is not stopped")
        self.timeline.record("pause", node=node, method=method)
        return method

    def unpause(self, node: str) -> None:
        """Thaw the node; it must be running with its process not stopped."""
        self.backend.unpause(self.node(node))
        self._expect_state(node, {"running"}, "unpause")
        if self.stopped(node):
            raise FaultNotApplied(f"unpause {node}: SIGCONT sent but the node process is still stopped")
        self.timeline.record("unpause", node=node)
