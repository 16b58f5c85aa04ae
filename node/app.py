"""Flask application factory: wires a Node into the registry, gossip and ops blueprints."""

from __future__ import annotations

import logging

from flask import Flask, abort, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from .clock import Clock
from .config import TEST, Config
from .gossip import Node, lease_of
from .store import SqliteStore, Store
from .transport import HttpTransport, Transport

log = logging.getLogger(__name__)


def build_node(
    config: Config,
    *,
    store: Store | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    **kwargs,
) -> Node:
    """Return a Node for ``config``: SQLite store at ``config.db``, HTTP transport."""
    store = store if store is not None else SqliteStore(config.db, lease_of(config))
    return Node(config, store, transport or HttpTransport(), clock or Clock(config.clock_offset), **kwargs)


def create_app(config: Config | None = None, *, node: Node | None = None) -> Flask:
    """Create the WSGI app serving ``node`` (built from ``config`` when not given).

    The gossip loop is not started here: ``python -m node`` starts exactly one, and tests
    drive rounds themselves.
    """
    if node is None:
        node = build_node(config or TEST)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = node.config.max_body
    app.json.sort_keys = False
    app.extensions["sd_node"] = node

    from . import ops, registry

    app.register_blueprint(registry.bp)
    app.register_blueprint(registry.legacy_bp)
    app.register_blueprint(ops.bp)
    app.extensions["sd_metrics"] = ops.metrics_registry(node)
    app.wsgi_app = ops.GossipEndpoint(app.wsgi_app, node)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=exc.name.lower().replace(" ", "_"), message=exc.description), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify(error="internal_error", message=f"{type(exc).__name__}: {exc}"), 500

    return app


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


def get_node() -> Node:
    """Return the Node served by the current app."""
    return current_app.extensions["sd_node"]
