"""Gossip-based service-discovery registry node (Flask + SQLite)."""

from .app import build_node, create_app

__all__ = ["build_node", "create_app"]
