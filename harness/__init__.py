"""Docker harness for the gossip registry: start clusters, inject faults, wait for convergence.

    from harness import Cluster

    with Cluster(nodes=5, name="demo") as c:
        c.register("n1", "10.0.0.1:80", "web")
        c.partition([["n1", "n2"], ["n3", "n4", "n5"]])
        c.heal()
        c.wait_converged(timeout=20, expect_present=["10.0.0.1:80"])
"""

from .cluster import Cluster, Node, gc
from .convergence import Report
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
from .timeline import Timeline
from .wait import wait_until

__all__ = [
    "Cluster", "Node", "Report", "Timeline", "gc", "wait_until",
    "HarnessError", "DockerUnavailable", "ImageNotFound", "ClusterNotFound", "ClusterExists",
    "NodeNotFound", "InvalidPartition", "NodeStartError", "FaultNotApplied", "FaultNotSupported",
    "ConvergenceTimeout",
]
