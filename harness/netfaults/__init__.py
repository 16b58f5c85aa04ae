"""Network faults: planned as data (``plan``), run and probed by one executor (``execute``).

``faults.NetworkFaults`` ties them to one cluster: snapshot, plan, apply, record.

``plan`` and ``rules`` (the iptables rules and scripts it installs) are pure and
import nothing from Docker; ``probe`` builds the command lines of the ``sd-probe``
script shipped in the node image and parses its JSON.
"""

from .execute import FaultExecutor
from .faults import NetworkFaults, Snapshot
from .plan import DelayCheck, FaultPlan, LossCheck, Step

__all__ = ["DelayCheck", "FaultExecutor", "FaultPlan", "LossCheck", "NetworkFaults", "Snapshot", "Step"]
