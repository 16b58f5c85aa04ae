"""Docker harness for the gossip registry: start clusters, inject faults, wait for convergence.

    from harness import Cluster

    with Cluster(nodes=5, name="demo") as c:
        c.register("n1", "10.0.0.1:80", "web")
        c.partition([["n1", "n2"], ["n3", "n4", "n5"]])
        c.heal()
        c.wait_converged(timeout=20, expect_present=["10.0.0.1:80"])

Names are imported on first use (PEP 562), so ``import harness.sim`` loads neither
the Docker SDK nor requests.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    ClusterExists,
    ClusterNotFound,
    ConvergenceTimeout,
    DockerUnavailable,
    FaultNotApplied,
    FaultNotSupported,
    HarnessError,
    ImageNotFound,
    InvalidPartition,
    NodeNotFound,
    NodeStartError,
)

if TYPE_CHECKING:
    from .cluster import Cluster, Node, gc
    from .contract import ClusterLike
    from .convergence import Report
    from .timeline import Timeline
    from .wait import wait_until

# name -> module it is imported from on first use
_LAZY = {
    "Cluster": ".cluster", "Node": ".cluster", "gc": ".cluster", "ClusterLike": ".contract",
    "Report": ".convergence", "Timeline": ".timeline", "wait_until": ".wait",
}

__all__ = [
    "Cluster", "ClusterLike", "Node", "Report", "Timeline", "gc", "wait_until",
    "HarnessError", "DockerUnavailable", "ImageNotFound", "ClusterNotFound", "ClusterExists",
    "NodeNotFound", "InvalidPartition", "NodeStartError", "FaultNotApplied", "FaultNotSupported",
    "ConvergenceTimeout",
]


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module the first time it is asked for."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value
