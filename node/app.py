"""Flask application factory: wires a Node into the registry, gossip and ops blueprints."""

from __future__ import annotations

from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider

from . import admin, ops, registry
from .bodylimit import BodyLimit
from .clock import Clock
from .config import TEST, Config
from .fastregister import RegisterEndpoint
from .gossip import Node, lease_of
from .store import SqliteStore, Store
from .transport import GOSSIP_PATH, GossipEndpoint, HttpTransport, Transport
from .udpclient import UdpTransport
from .watch import Watches
from .web import error_answer


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
    # Registrations and peers' messages skip Flask: see RegisterEndpoint and GossipEndpoint.
    app.wsgi_app = RegisterEndpoint(app.wsgi_app, node)  # type: ignore[method-assign]
    app.wsgi_app = GossipEndpoint(app.wsgi_app, node, node.config.max_gossip_body)  # type: ignore[method-assign]
    # Outermost: an oversized body is refused before the gossip endpoint or Flask looks at it.
    app.wsgi_app = BodyLimit(  # type: ignore[method-assign]
        app.wsgi_app, node.config.max_body, {GOSSIP_PATH: node.config.max_gossip_body})

    @app.errorhandler(Exception)
    def json_error(exc: Exception):
        """Every error leaves as the API's JSON body (``web.error_answer``), never a traceback."""
        status, body, headers = error_answer(exc)
        response = jsonify(body)
        response.headers.extend(headers)
        return response, status

    return app
