"""Convergence experiments: how fast one registration reaches every node, against theory.

A sweep runs trials on two backends that share the protocol code:

- ``sim``: ``SimCluster`` (real Node code, in-memory transport, virtual clock) in one
  process; ``async`` mode lets news travel several hops per round as between real nodes
  out of phase, ``sync`` applies what a round learned only after the round, like the
  synchronous model of the theory table.
- ``docker``: real containers through ``Cluster`` (imported only when Docker runs).

A trial registers a fresh address at a random node and records, for every node, when
that node first stored it, read from the node itself (``seen_at`` of
``/registry/entries`` in Docker, the store's ``Seen`` in the sim): rounds are
``(seen_at - t_origin) / interval`` (the round a node holds it in is the ceiling; in the
sim this is exactly the step count). Exchanges and bytes come from the nodes' counters
(``/metrics`` in Docker). One cluster serves every repeat of a (N, fanout, interval,
loss) combination; every trial starts once each node knows every other node. One
nemesis (``nemesis.py``) applies and undoes the fault on either backend.

Byte counts: Docker counts every gossip byte once, by its sender, HTTP headers included
(``sd_gossip_bytes_sent_total``); the sim sums the same counter of its nodes, which count
encoded bodies, without HTTP overhead. ``bytes_per_node_s`` = bytes / N / seconds.

Modules: ``model`` (Sweep, Trial, CSV columns), ``nemesis`` (the fault plan), ``sim`` and
``engine`` (the two backends), ``summary``, ``output`` (files and tables), ``runner``.
"""

from .model import AGREEMENT, BACKENDS, CSV_COLUMNS, FAULTS, SIM_MODES, Sweep, Trial
from .output import agreement_table, experiment_table, write_csv, write_outputs
from .runner import run
from .sim import SimBackend
from .summary import agreement, quantile, summarize

__all__ = [
    "AGREEMENT", "BACKENDS", "CSV_COLUMNS", "FAULTS", "SIM_MODES", "SimBackend", "Sweep", "Trial",
    "agreement", "agreement_table", "experiment_table", "quantile", "run", "summarize", "write_csv",
    "write_outputs",
]
