"""Flask application factory: wires a Node into the registry, gossip and ops blueprints."""

from __future__ import annotations

import logging
import sqlite3

from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from . import admin, ops, registry
from .bodylimit import BodyLimit
from .clock import Clock
from .config import TEST, Config
from .gossip import Node, lease_of
from .store import SqliteStore, Store
from .transport import GOSSIP_PATH, GossipEndpoint, HttpTransport, Transport
from .udpclient import UdpTransport
from .versions import VersionsExhausted
from .watch import Watches

log = logging.getLogger(__name__)


class _InsertionOrderJSON(DefaultJSONProvider):
    """Flask's JSON, with keys in the order the views build them."""

    sort_keys = False


def build_node(
    config: Config,
    *,
    store: Store | None = None,
    transport: Transport | None = None,
    clock: Clock | None = None,
    **kwargs,
) -> Node:
    """Return a Node for ``config``: SQLite store at ``config.db``, its ``transport`` signing with its keyring."""
    store = store if store is not None else SqliteStore(config.db, lease_of(config))
    node = Node(config, store, transport, clock or Clock(config.clock_offset), **kwargs)
    if transport is None:
        http = HttpTransport(keyring=node.keyring)
        node.transport = UdpTransport(node.keyring, config.max_datagram, http) if config.transport == "udp" else http
    return node


def create_app(config: Config | None = None, *, node: Node | None = None) -> Flask:
    """Create the WSGI app serving ``node`` (built from ``config`` when not given).

    The gossip loop is not started here: ``python -m node`` starts exactly one, and tests
    drive rounds themselves.
    """
    if node is None:
        node = build_node(config or TEST)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = node.config.max_body
    app.json = _InsertionOrderJSON(app)
    app.extensions["sd_node"] = node
    # Held listing requests each keep a worker thread: at most half of them (see ``watch``).
    app.extensions["sd_watches"] = Watches.for_threads(node.config.threads)

    app.register_blueprint(registry.bp)
    app.register_blueprint(registry.legacy_bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(admin.bp)
    app.extensions["sd_metrics"] = ops.metrics_registry(node)
    # Peers' messages skip Flask: see GossipEndpoint.
    app.wsgi_app = GossipEndpoint(app.wsgi_app, node, node.config.max_gossip_body)  # type: ignore[method-assign]
    # Outermost: an oversized body is refused before the gossip endpoint or Flask looks at it.
    app.wsgi_app = BodyLimit(  # type: ignore[method-assign]
        app.wsgi_app, node.config.max_body, {GOSSIP_PATH: node.config.max_gossip_body})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        response = jsonify(error=exc.name.lower().replace(" ", "_"), message=exc.description)
        # The exception's own headers but its HTML Content-Type: a 405 names the methods in Allow.
        response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return response, exc.code

    @app.errorhandler(VersionsExhausted)
    def versions_exhausted(exc: VersionsExhausted):
        log.error("write refused: %s", exc)
        return jsonify(error="versions_exhausted", message=str(exc)), 503

    @app.errorhandler(sqlite3.Error)
    def store_failed(exc: sqlite3.Error):
        # Requests read an in-memory snapshot: a database error is a write that was not
        # committed (disk full, I/O error), and nothing was stored. /health reports it.
        log.error("write failed: %s: %s", type(exc).__name__, exc)
        return jsonify(error="store_unavailable", message=f"the write was not stored: {exc}"), 503

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error")
        return jsonify(error="internal_error", message=f"{type(exc).__name__}: {exc}"), 500

    return app
