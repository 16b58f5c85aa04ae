"""Request helpers shared by the blueprints: the served node and the JSON body."""

from __future__ import annotations

from flask import abort, current_app, request

from .gossip import Node


def get_node() -> Node:
    """Return the Node served by the current app."""
    return current_app.extensions["sd_node"]


def read_json():
    """Return the request body parsed as JSON, or abort with 400 (never a 500).

    Parsed whatever the Content-Type, so ``curl -d`` works; nesting too deep for the
    parser is bad input like any other.
    """
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:
        abort(400, "JSON body is nested too deeply")
    if body is None:
        abort(400, "body must be JSON")
    return body
