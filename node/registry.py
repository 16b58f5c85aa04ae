"""Client API: list, register, deregister, digest, perform_update (JSON in and out).

``GET /registry/list`` answers from bytes serialized once per snapshot and status
window (``listing``): gzip-encoded when the client accepts it, tagged with a strong
ETag, and 304 Not Modified to a client whose ``If-None-Match`` names the tag it would get.
"""

from __future__ import annotations

import functools
from io import BytesIO

from flask import Blueprint, Response, abort, current_app, jsonify, request
from werkzeug.http import parse_accept_header
from werkzeug.wsgi import wrap_file

from . import protocol, watch
from .addresses import AddressError, canonical
from .gossip import Node
from .listing import Body, build_listing
from .protocol import Entry, Lease
from .validation import app_name_problem
from .web import get_node, read_json

bp = Blueprint("registry", __name__, url_prefix="/registry")
# The design note also spells the registration path /register/register_instance.
legacy_bp = Blueprint("register", __name__, url_prefix="/register")

STATUSES = (protocol.HEALTHY, protocol.EXPIRED)


def entry_view(entry: Entry, now: float, lease: Lease | None = None) -> dict:
    """Return the client-facing JSON of one entry (``lease``: the served node's when not given)."""
    lease = lease or get_node().lease
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


def field_last_update(body: dict, node: Node | None = None) -> int | None:
    """Return the body's last_update as an integer (None when absent), or abort with 400."""
    value = body.get("last_update")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        abort(400, "last_update must be a unix timestamp (a number)")
    if value < 0:
        abort(400, "last_update must not be negative")
    if value > protocol.MAX_INT:  # before any arithmetic: a huge integer overflows a float
        abort(400, f"last_update must be at most {protocol.MAX_INT}")
    node = node or get_node()
    ahead = value - node.clock.wall()
    if ahead > node.config.max_future:
        abort(400, f"last_update is {ahead:.0f} s ahead of this node's clock (limit {node.config.max_future:.0f} s)")
    return int(value)


@bp.get("/list")
def list_instances():
    """List registered instances keyed by address; filters: app_name, status; a watch with index and wait.

    Every answer carries the state's index in X-Registry-Index (see ``watch``) and the
    body's ETag; the body is gzip-encoded for a client that accepts it.
    """
    node = get_node()
    app_name = request.args.get("app_name")
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        abort(400, f"status must be one of {', '.join(STATUSES)}")
    snap = watch.snapshot_for(request.args, node.store, current_app.extensions["sd_watches"])
    now = node.clock.now()
    listing = snap.derived("registry.list", now, lambda: build_listing(snap, now, node.lease))
    return body_response(listing.select(app_name, status), {watch.INDEX_HEADER: str(snap.generation)})


FILE_FROM = 64 * 1024
"""Size from which a listing's body is sent through ``wsgi.file_wrapper`` (see ``body_response``)."""


def body_response(body: Body, headers: dict[str, str]) -> Response:
    """Answer with ``body``: gzip-encoded if the client accepts gzip, 304 if it holds this representation already.

    Bodies of ``FILE_FROM`` bytes or more are handed to the server as a file
    (``wsgi.file_wrapper``), which sends them from the cached buffer instead of copying
    them into its own; smaller ones as they are (the wrapper costs more than the copy).
    """
    environ = request.environ
    encoded = body.compressible and accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", ""))
    etag = body.gzip_etag if encoded else body.etag
    headers = {**headers, "Vary": "Accept-Encoding", "ETag": f'"{etag}"'}
    # RFC 9110: If-None-Match compares weakly (W/"x" matches "x"); * matches any listing.
    if "HTTP_IF_NONE_MATCH" in environ and request.if_none_match.contains_weak(etag):
        return Response(status=304, headers=headers)
    data = body.gzipped() if encoded else body.data
    if encoded:
        headers["Content-Encoding"] = "gzip"
    headers["Content-Length"] = str(len(data))
    payload = wrap_file(request.environ, BytesIO(data)) if len(data) >= FILE_FROM else [data]
    return Response(payload, headers=headers, direct_passthrough=True,
                    mimetype=current_app.json.mimetype)  # type: ignore[attr-defined]


@bp.post("/register_instance")
@legacy_bp.post("/register_instance")
def register_instance():
    """Register or renew an instance (a heartbeat); last_update is stamped when absent.

    Served ahead of Flask by ``fastregister.RegisterEndpoint``, through ``register_from``
    as here: this view answers only in an app built without that middleware.
    """
    view, status = register_from(read_json(), get_node())
    return jsonify(view), status


@functools.lru_cache(maxsize=64)
def accepts_gzip(accept_encoding: str) -> bool:
    """Tell whether an Accept-Encoding header value accepts gzip (quality above 0; clients send few distinct values)."""
    return "gzip" in accept_encoding and parse_accept_header(accept_encoding)["gzip"] > 0


def register_from(body: object, node: Node) -> tuple[dict, int]:
    """Register or renew as the parsed request ``body`` asks; return the answer's JSON and status.

    Aborts with 400 or 403 (nothing written) on a body a client must correct.
    """
    if not isinstance(body, dict):
        abort(400, "body must be a JSON object")
    address, app_name, last_update = field_address(body), field_app_name(body), field_last_update(body, node)
    written = node.register(address, app_name, last_update)
    view = {"address": address, **entry_view(written.entry, node.clock.now(), node.lease)}
    return view, 201 if written.created else 200


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
