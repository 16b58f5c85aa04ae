"""Client API: list, register, deregister, digest, perform_update (JSON in and out).

``GET /registry/list`` answers from bytes serialized once per snapshot and status
window: a listing depends only on the snapshot and on each entry's status, and every
status stays put between the edges ``protocol.status_window`` names, so the bytes
built at one reading serve every reading of the same snapshot inside that window, and
a reading outside it (an entry expired or went) rebuilds them. Filtered listings are
cached beside it, a few per window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Blueprint, Response, abort, current_app, jsonify, request

from . import protocol, watch
from .addresses import AddressError, canonical
from .protocol import Entry, Lease
from .snapshot import Snapshot
from .validation import app_name_problem
from .web import get_node, read_json

bp = Blueprint("registry", __name__, url_prefix="/registry")
# The design note also spells the registration path /register/register_instance.
legacy_bp = Blueprint("register", __name__, url_prefix="/register")

STATUSES = (protocol.HEALTHY, protocol.EXPIRED)
FILTERED_CACHED = 32
"""Filtered listings kept per listing (distinct app_name/status queries); more empty the cache."""


def entry_view(entry: Entry, now: float) -> dict:
    """Return the client-facing JSON of one entry."""
    lease = get_node().lease
    return {
        "app_name": entry.app_name,
        "last_update": entry.last_update,
        "status": entry.status(now, lease),
        "version": entry.version,
    }


def json_body() -> dict:
    """Return the request body as a JSON object, or abort with 400."""
    body = read_json()
    if not isinstance(body, dict):
        abort(400, "body must be a JSON object")
    return body


def field_address(body: dict) -> str:
    """Return the body's address in its canonical spelling (``addresses``), or abort with 400."""
    address = body.get("address")
    if not isinstance(address, str):
        abort(400, "address is required and must be a string")
    return canonical_or_400(address)


def canonical_or_400(address: str) -> str:
    """Return the canonical spelling of ``address``, or abort with 400 saying what is wrong."""
    try:
        return canonical(address)
    except AddressError as exc:
        abort(400, str(exc))


def field_app_name(body: dict) -> str:
    """Return the body's app_name, or abort with 400 (``validation``'s rule) or 403 (reserved)."""
    name = body.get("app_name")
    problem = app_name_problem(name)
    if problem is not None:
        abort(400, problem)
    assert isinstance(name, str)  # for mypy: app_name_problem checks it
    if name == protocol.NODE_APP:
        # Entries of this app are the cluster's members, unleased and chosen as gossip
        # peers: only a node itself writes one, or any client could plant a peer.
        abort(403, f"app_name {protocol.NODE_APP!r} is reserved for the registry's own nodes")
    return name


def field_last_update(body: dict) -> int | None:
    value = body.get("last_update")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        abort(400, "last_update must be a unix timestamp (a number)")
    if value < 0:
        abort(400, "last_update must not be negative")
    if value > protocol.MAX_INT:  # before any arithmetic: a huge integer overflows a float
        abort(400, f"last_update must be at most {protocol.MAX_INT}")
    node = get_node()
    ahead = value - node.clock.wall()
    if ahead > node.config.max_future:
        abort(400, f"last_update is {ahead:.0f} s ahead of this node's clock (limit {node.config.max_future:.0f} s)")
    return int(value)


@dataclass
class Listing:
    """The client listing of one snapshot over one status window, with its JSON bytes."""

    views: dict[str, dict]  # address -> the entry's client view, in address order (read-only)
    body: bytes  # ``views`` as jsonify writes it
    # (app_name, status) filter -> the JSON bytes of the listing it selects
    filtered: dict[tuple[str | None, str | None], bytes] = field(default_factory=dict)

    def select(self, app_name: str | None, status: str | None) -> bytes:
        """Return the JSON bytes of the entries with this app_name and status (None: any)."""
        if app_name is None and status is None:
            return self.body
        key = (app_name, status)
        body = self.filtered.get(key)
        if body is None:
            out = {
                a: v for a, v in self.views.items()
                if (app_name is None or v["app_name"] == app_name) and (status is None or v["status"] == status)
            }
            if len(self.filtered) >= FILTERED_CACHED:
                self.filtered.clear()
            body = self.filtered[key] = jsonify(out).get_data()
        return body


def build_listing(snap: Snapshot, now: float, lease: Lease) -> tuple[Listing, float, float]:
    """Return the listing of ``snap`` at ``now`` and the window ``[since, until)`` over which it holds."""
    views: dict[str, dict] = {}  # in address order, as the JSON lists them
    since, until = float("-inf"), float("inf")
    entries = snap.entries
    for address in sorted(entries):
        e = entries[address]
        if e.deleted:  # tombstones are never listed, whatever the instant
            continue
        lo, hi = protocol.status_window(e, now, lease)
        since, until = max(since, lo), min(until, hi)
        status = e.status(now, lease)
        if status != protocol.GONE:
            views[address] = {"app_name": e.app_name, "last_update": e.last_update, "status": status,
                              "version": e.version}
    return Listing(views, jsonify(views).get_data()), since, until


@bp.get("/list")
def list_instances():
    """List registered instances keyed by address; filters: app_name, status; a watch with index and wait.

    Every answer carries the state's index in X-Registry-Index (see ``watch``).
    """
    node = get_node()
    app_name = request.args.get("app_name")
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        abort(400, f"status must be one of {', '.join(STATUSES)}")
    snap = watch.snapshot_for(request.args, node.store, current_app.extensions["sd_watches"])
    now = node.clock.now()
    listing = snap.derived("registry.list", now, lambda: build_listing(snap, now, node.lease))
    body = listing.select(app_name, status)
    return Response(body, mimetype=current_app.json.mimetype,  # type: ignore[attr-defined]
                    headers={watch.INDEX_HEADER: str(snap.generation)})


@bp.post("/register_instance")
@legacy_bp.post("/register_instance")
def register_instance():
    """Register or renew an instance (a heartbeat); last_update is stamped when absent."""
    body = json_body()
    address, app_name, last_update = field_address(body), field_app_name(body), field_last_update(body)
    node = get_node()
    written = node.register(address, app_name, last_update)
    view = {"address": address, **entry_view(written.entry, node.clock.now())}
    return jsonify(view), 201 if written.created else 200


@bp.post("/deregister_instance")
def deregister_instance():
    """Remove an instance everywhere (a tombstone that gossip spreads)."""
    address = field_address(json_body())
    written = get_node().deregister(address)
    return jsonify(address=address, deregistered=True, known=not written.created, version=written.entry.version)


@bp.get("/perform_update")
def perform_update():
    """Run one gossip round now (optionally with ?peer=host:port, a live peer or seed) and report it."""
    node = get_node()
    peer = request.args.get("peer")
    if peer is not None:
        peer = canonical_or_400(peer)
        # A client must not make this node connect wherever it names: only to a node of the cluster.
        if peer == node.address or (peer not in node.peers() and peer not in node.config.seeds):
            abort(403, f"peer {peer} is neither a live peer nor a seed of this node")
    exchanges = node.run_round([peer] if peer else None)
    return jsonify(
        node=node.address,
        peers=[x.peer for x in exchanges],
        sent=sum(x.sent for x in exchanges),
        received=sum(x.received for x in exchanges),
        exchanges=[x.as_dict() for x in exchanges],
    )


@bp.get("/digest")
def digest():
    """Return a short hash of the listed view and its size: equal everywhere = converged."""
    node = get_node()
    listing = node.listing()
    return jsonify(digest=protocol.view_hash(listing.values()), entries=len(listing))


@bp.get("/entries")
def entries():
    """Return everything this node holds, tombstones included, with first-seen data."""
    node = get_node()
    snap = node.store.snapshot()
    now = node.clock.now()
    out = {}
    for address, e in sorted(snap.entries.items()):
        seen = snap.seen.get(address)
        out[address] = {
            "app_name": e.app_name,
            "last_update": e.last_update,
            "status": e.status(now, node.lease),
            "version": e.version,
            "origin": e.origin,
            "deleted": e.deleted,
            "age": round(e.age(now), 3),
            "seen_at": seen.at if seen else None,
            "seen_round": seen.round if seen else None,
        }
    return jsonify(out)
