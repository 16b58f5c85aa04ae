"""Peer and operator endpoints: gossip, health, metrics, clock offset."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .app import get_node, read_json
from .gossip import Node
from .transport import GOSSIP_PATH, encode

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


class GossipEndpoint:
    """WSGI middleware serving ``POST /gossip`` ahead of Flask; everything else passes through.

    Gossip is the hot path between nodes (fanout x rounds per second on every node), so it
    skips Flask's routing and request context; errors keep the API's JSON shape.
    """

    def __init__(self, app, node: Node) -> None:
        self.app = app
        self.node = node

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != GOSSIP_PATH:
            return self.app(environ, start_response)
        node = self.node
        if environ.get("REQUEST_METHOD") != "POST":
            return _error(start_response, 405, "method_not_allowed", "gossip takes POST")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(start_response, 400, "bad_request", "bad Content-Length")
        if length > node.config.max_gossip_body:
            return _error(start_response, 413, "request_entity_too_large", "gossip message too large")
        body = environ["wsgi.input"].read(length)
        try:
            reply = node.handle(json.loads(body))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and ProtocolError are ValueErrors
            return _error(start_response, 400, "bad_request", f"bad gossip message: {exc}")
        except Exception as exc:  # noqa: BLE001 - answer 500 as JSON, log, keep serving
            log.exception("gossip handler failed")
            return _error(start_response, 500, "internal_error", f"{type(exc).__name__}: {exc}")
        data = encode(reply)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response("200 OK", headers)
        received = length + sum(len(k) - 5 + len(v) + 4 for k, v in environ.items() if k.startswith("HTTP_"))
        node.stats.add(bytes_received=received + 40, bytes_sent=len(data) + 120)
        return [data]


def _error(start_response, status: int, error: str, message: str):
    data = encode({"error": error, "message": message})
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


@bp.get("/health")
def health():
    """Report liveness with a few facts about this node."""
    node = get_node()
    return jsonify(status="ok", address=node.address, entries=len(node.listing()), peers=len(node.peers()))


@bp.route("/admin/clock", methods=["GET", "POST"])
def clock():
    """Read or set this node's wall-clock offset (a testing aid for clock skew)."""
    node = get_node()
    if request.method == "POST":
        body = read_json()
        offset = body.get("offset") if isinstance(body, dict) else None
        if isinstance(offset, bool) or not isinstance(offset, (int, float)) or abs(offset) > 10 * 365 * 86400:
            abort(400, "body must be {\"offset\": seconds} with |offset| <= 10 years")
        node.clock.offset = float(offset)
    return jsonify(offset=node.clock.offset, wall=node.clock.wall())


class NodeCollector:
    """Prometheus collector reading a node's counters and store at scrape time."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self):
        n, s = self.node, self.node.stats
        counters = [
            ("sd_gossip_rounds", "Gossip rounds run", s.rounds),
            ("sd_gossip_exchanges_failed", "Exchanges that failed (peer down, cut, slow)", s.exchanges_failed),
            ("sd_gossip_exchanges_ok", "Exchanges that completed", s.exchanges_ok),
            ("sd_gossip_bytes_sent", "Gossip bytes sent, HTTP headers included", s.bytes_sent),
            ("sd_gossip_bytes_received", "Gossip bytes received, HTTP headers included", s.bytes_received),
            ("sd_gossip_merges_applied", "Entries changed by merging gossip", s.merges_applied),
        ]
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        live = n.store.live(n.clock.now())
        tombstones = sum(1 for e in live.values() if e.deleted)
        listed = len(live) - tombstones
        yield GaugeMetricFamily("sd_registry_entries", "Listed entries (healthy and expired)", value=listed)
        yield GaugeMetricFamily("sd_registry_tombstones", "Deregistrations remembered", value=tombstones)
        yield GaugeMetricFamily("sd_gossip_known_peers", "Live peer nodes known", value=len(n.peers()))
        yield GaugeMetricFamily("sd_clock_offset_seconds", "Wall-clock offset (testing aid)", value=n.clock.offset)


@bp.get("/metrics")
def metrics():
    """Expose metrics in the Prometheus text format."""
    registry = current_app.extensions["sd_metrics"]
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")


def metrics_registry(node: Node) -> CollectorRegistry:
    """Return a Prometheus registry holding this node's collector (one per app)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry
