"""Operator endpoints: health, metrics, the API description (/admin/*: ``admin``; /gossip: transport.GossipEndpoint)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from . import apispec
from .gossip import Node
from .health import report
from .keyring import REASONS
from .web import get_node

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health():
    """Report this node's facts: 200 "ok", or 503 "degraded" with the ``problems`` (``health``)."""
    healthy, body = report(get_node())
    return jsonify(body), 200 if healthy else 503


class NodeCollector:
    """Prometheus collector reading a node's counters and store at scrape time."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self):
        n, s, r = self.node, self.node.stats, self.node.rumors.stats
        counters = [
            ("sd_gossip_rounds", "Gossip rounds run", s.rounds),
            ("sd_gossip_exchanges_failed", "Exchanges that failed (peer down, cut, slow)", s.exchanges_failed),
            ("sd_gossip_exchanges_ok", "Exchanges that completed", s.exchanges_ok),
            ("sd_gossip_bytes_sent", "Gossip bytes sent, as initiator and responder: HTTP messages with their "
             "headers, whole datagrams", s.bytes_sent),
            ("sd_gossip_bytes_received", "Gossip bytes received, as initiator and responder: HTTP messages with "
             "their headers, whole datagrams", s.bytes_received),
            ("sd_gossip_merges_applied", "Entries changed by merging gossip", s.merges_applied),
            ("sd_gossip_suspicions", "Peers suspected after a failed exchange", s.suspicions),
            ("sd_gossip_down_marks", "Suspects marked down by this node", s.down_marks),
            ("sd_gossip_refutations", "Times this node found itself marked down and re-registered", s.refutations),
            ("sd_gossip_replies_late", "Replies that came after their exchange's deadline, dropped unmerged",
             s.late_replies),
            ("sd_gossip_udp_fallbacks", "Messages sent over HTTP because one datagram could not carry them or "
             "their reply", getattr(n.transport, "fallbacks", 0)),
            ("sd_gossip_rumors_sent", "Rumors (eager pushes of news) a peer answered", r.sent),
            ("sd_gossip_rumors_failed", "Rumors that failed (peer down, cut, refused); the rounds repair them",
             r.failed),
            ("sd_gossip_rumors_dropped", "Rumors dropped unsent because too many sends were waiting", r.dropped),
            ("sd_gossip_rumor_entries_left", "Changed entries left to the rounds: beyond what one rumor carries",
             r.left),
        ]
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        rejected = CounterMetricFamily(
            "sd_gossip_messages_rejected",
            "Gossip messages refused before decoding (requests and replies), by reason", labels=["reason"])
        with s.lock:
            counts = dict(s.rejected)
        for reason in REASONS:
            rejected.add_metric([reason], counts.get(reason, 0))
        yield rejected
        refused = CounterMetricFamily(
            "sd_gossip_entries_refused",
            "Gossiped entries refused unmerged, by reason (version_jump: far above this node's clock; "
            "address, app_name: a value the client API refuses)",
            labels=["reason"])
        with s.lock:
            for reason, count in s.refused.items():
                refused.add_metric([reason], count)
        yield refused
        live = n.store.live(n.clock.now())
        tombstones = sum(1 for e in live.values() if e.deleted)
        listed = len(live) - tombstones
        yield GaugeMetricFamily("sd_registry_entries", "Listed entries (healthy and expired)", value=listed)
        yield GaugeMetricFamily("sd_registry_tombstones", "Deregistrations remembered", value=tombstones)
        yield GaugeMetricFamily("sd_gossip_known_peers", "Live peer nodes known", value=len(n.peers()))
        yield GaugeMetricFamily("sd_gossip_local_health", "Local health score: 0 healthy; above 0 this node finds "
                                "itself slow, scales its probe timeouts and marks no one down", value=n.awareness.score)
        yield GaugeMetricFamily("sd_clock_offset_seconds", "Wall-clock offset (testing aid)", value=n.clock.offset)


@bp.get("/openapi.json")
def openapi():
    """Serve the OpenAPI 3 description of this API (``apispec``)."""
    return jsonify(apispec.SPEC)


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
