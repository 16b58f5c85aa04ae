"""Gossip-based service-discovery registry node (Flask + SQLite).

The protocol modules (``protocol``, ``wire``, ``handshake``, ``snapshot``, ``store``,
``gossip``, ``transport``) load without Flask; the web app is ``node.app.create_app``.
"""
