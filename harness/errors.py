"""Named errors of the harness; each message is one line meant for a human."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class DockerUnavailable(HarnessError):
    """The Docker daemon cannot be reached."""


class ImageNotFound(HarnessError):
    """The node image is not present locally (nothing can be pulled here)."""


class ClusterNotFound(HarnessError):
    """No container carries the labels of the named cluster."""


class ClusterExists(HarnessError):
    """A cluster of that name is already running; bring it down (or gc) first."""


class NodeNotFound(HarnessError, KeyError):
    """A node name is not part of the cluster."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidPartition(HarnessError, ValueError):
    """Partition groups are empty, overlapping or otherwise malformed."""


class NodeStartError(HarnessError):
    """A node did not answer /health in time; carries the tail of its logs."""

    def __init__(self, message: str, logs: dict[str, str] | None = None):
        super().__init__(message)
        # node name -> tail of its container log
        self.logs = logs or {}

    def __str__(self) -> str:
        return _with_logs(self.args[0], self.logs)


class FaultNotApplied(HarnessError):
    """A fault was applied but the probe shows no (or the wrong) effect."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        # output of the command or probe that showed the problem
        self.output = output


class FaultNotSupported(HarnessError):
    """The kernel or image lacks what the fault needs (e.g. sch_netem for delay)."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


class ConvergenceTimeout(HarnessError):
    """Nodes did not agree in time; carries what was last seen."""

    def __init__(self, message: str, report=None, logs: dict[str, str] | None = None):
        super().__init__(message)
        # harness.convergence.Report of the last attempt (None if never observed)
        self.report = report
        # node name -> tail of the log of each node that lagged or disagreed
        self.logs = logs or {}

    def __str__(self) -> str:
        text = self.args[0]
        if self.report is not None:
            text += "\n" + self.report.explain()
        return _with_logs(text, self.logs)


def _with_logs(text: str, logs: dict[str, str]) -> str:
    """Append log tails, indented, below ``text``."""
    for name, tail in logs.items():
        body = "\n".join("    " + _clip(line) for line in tail.rstrip().splitlines()) or "    (empty)"
        text += f"\n--- log tail of {name} ---\n{body}"
    return text


def _clip(line: str, width: int = 240) -> str:
    """Shorten one log line to ``width`` characters."""
    return line if len(line) <= width else line[: width - 3] + "..."
