"""A live page of a running cluster: nodes coloured by digest group, faults, dissemination, timeline, controls.

``python -m harness dashboard --name NAME`` (Docker or swarm) or ``--backend sim --nodes 20``
serves it on 127.0.0.1. ``sources`` reads a cluster (one poller, the nodes' watches),
``hub`` turns readings into the state every page shares, ``server`` serves the page,
the state as server-sent events and the controls.
"""
