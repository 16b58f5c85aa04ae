"""The OpenAPI 3 description of a node's client API, served at ``GET /openapi.json``.

Built here as data, once, from a few helpers so every operation lists the same error
body. It describes what the views in ``registry``, ``ops`` and ``admin`` accept and
answer, every 4xx/5xx they send on purpose included; ``tests/test_openapi.py`` checks
the routes against it and fuzzes a node with it (schemathesis), so a route or an answer
cannot drift from it unnoticed.

``/gossip`` is described as a peer-only endpoint with an opaque JSON body: its messages
are the versioned peer protocol (``wire``), which changes with the nodes, not a client
contract; its answers a client may meet (403 unsigned, 413 too large, 400 malformed)
are described so that they can be told apart from the client API's.
"""

from __future__ import annotations

from typing import Any

from .config import MAX_CLOCK_OFFSET
from .protocol import MAX_INT
from .validation import MAX_APP_NAME

JSON = "application/json"
ERROR_CODES = {
    400: ["bad_request"],
    403: ["forbidden"],
    413: ["request_entity_too_large"],
    503: ["versions_exhausted", "store_unavailable"],
}
"""Status -> the ``error`` fields a node answers with it (``app``'s handlers, ``bodylimit``)."""


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, *, closed: bool = True) -> dict:
    """Return a JSON object schema with these required and optional properties."""
    schema: dict[str, Any] = {"type": "object", "required": list(required),
                              "properties": {**required, **(optional or {})}}
    if closed:
        schema["additionalProperties"] = False
    return schema


def error(status: int, description: str) -> dict:
    """Return the response of an error ``status``: the API's JSON error body with its ``error`` codes."""
    schema = obj({"error": {"type": "string", "enum": ERROR_CODES[status]}, "message": {"type": "string"}})
    return {"description": description, "content": {JSON: {"schema": schema}}}


def ok(description: str, schema: dict) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def body(schema: dict, description: str) -> dict:
    return {"required": True, "description": description, "content": {JSON: {"schema": schema}}}


TOO_LARGE = error(413, "The declared Content-Length is over the path's limit (16 KiB; 16 MiB for /gossip); "
                       "the body is not read.")
BAD_BODY = "The body is not a JSON object, or a field is missing or invalid; `message` says which. Nothing is stored."
EXHAUSTED = error(503, "The write was not stored: it would need a Lamport version past 2**53-1, which no peer "
                      "accepts (`versions_exhausted`), or the database failed to commit it (`store_unavailable`; "
                      "/health then reports the node degraded).")
ADDRESS_PATTERN = r"^(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9][A-Za-z0-9._-]{0,252}):[0-9]{1,5}$"
"""The shape of an address (``addresses._SHAPE``), for clients and request generators."""
INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}

SCHEMAS: dict[str, dict] = {
    "Address": {"type": "string", "pattern": ADDRESS_PATTERN, "example": "10.0.0.7:8080",
                "description": "host:port, in its canonical spelling (node/addresses.py); the node also checks "
                               "the port range and IP literals, and stores a request's spelling canonical"},
    "Instance": obj({
        "app_name": STR,
        "last_update": {**INT, "description": "unix seconds stamped by the node or given by the client"},
        "status": {"type": "string", "enum": ["healthy", "expired"]},
        "version": {**INT, "minimum": 1, "description": "Lamport version of the last write"},
    }),
    "Registration": obj({
        "address": ref("Address"), "app_name": STR, "last_update": INT,
        "status": {"type": "string", "enum": ["healthy"]}, "version": {**INT, "minimum": 1},
    }),
    "Deregistration": obj({
        "address": ref("Address"), "deregistered": {"type": "boolean", "enum": [True]},
        "known": {"type": "boolean", "description": "whether the node held the instance"},
        "version": {**INT, "minimum": 1},
    }),
    "HeldEntry": obj({
        "app_name": STR, "last_update": INT,
        "status": {"type": "string", "enum": ["healthy", "expired", "deleted", "gone"]},
        "version": {**INT, "minimum": 1}, "origin": ref("Address"), "deleted": {"type": "boolean"},
        "age": {**NUM, "minimum": 0, "description": "seconds since the write's renewal"},
        "seen_at": {**NUM, "nullable": True}, "seen_round": {**INT, "nullable": True},
    }),
    "Exchange": obj({"peer": ref("Address"), "ok": {"type": "boolean"}}, {
        "sent": INT, "received": INT, "bytes_sent": INT, "bytes_received": INT, "error": STR,
    }),
    "RoundReport": obj({
        "node": ref("Address"), "peers": {"type": "array", "items": ref("Address")},
        "sent": INT, "received": INT, "exchanges": {"type": "array", "items": ref("Exchange")},
    }),
    "Digest": obj({"digest": {"type": "string", "pattern": "^[0-9a-f]{16}$"}, "entries": {**INT, "minimum": 0}}),
    "Clock": obj({"offset": NUM, "wall": NUM}),
}


def health(status: str) -> dict:
    """Return the /health body schema whose ``status`` is ``status`` ("degraded" carries ``problems``)."""
    facts = {
        "status": {"type": "string", "enum": [status]}, "address": ref("Address"),
        "entries": {**INT, "minimum": 0}, "peers": {**INT, "minimum": 0},
        "last_round_age": {**NUM, "nullable": True}, "last_round_failures": {**INT, "nullable": True},
        "store_writable": {"type": "boolean"},
    }
    if status == "degraded":
        facts["problems"] = {"type": "array", "items": STR, "minItems": 1}
    return obj(facts)


REGISTERED = {
    "ListTheApp": {"operationId": "list", "parameters": {"app_name": "$response.body#/app_name"},
                   "description": "The app's instances, this one among them."},
    "Deregister": {"operationId": "deregister_instance", "requestBody": {"address": "$response.body#/address"},
                   "description": "Remove the instance."},
}
"""What a client may do next with a registration (OpenAPI links; schemathesis follows them in sequences)."""
DEREGISTERED = {
    "RegisterAgain": {"operationId": "register_instance",
                      "requestBody": {"address": "$response.body#/address", "app_name": "web"},
                      "description": "Register the address anew: its new write beats the tombstone."},
}


def register_operation(operation_id: str) -> dict:
    return {
        "operationId": operation_id,
        "tags": ["registry"],
        "summary": "Register or renew (heartbeat) an instance",
        "requestBody": body(obj(
            {"address": ref("Address"), "app_name": {**STR, "minLength": 1, "maxLength": MAX_APP_NAME}},
            {"last_update": {**NUM, "nullable": True, "minimum": 0, "maximum": MAX_INT,
                             "description": "unix seconds; omitted or null: the node stamps it; at most "
                                            "max-future seconds ahead of the node's clock"}},
            closed=False), "Other fields are ignored."),
        "responses": {
            "200": {**ok("Renewed: the instance was registered before.", ref("Registration")), "links": REGISTERED},
            "201": {**ok("Registered: a new instance.", ref("Registration")), "links": REGISTERED},
            "400": error(400, BAD_BODY),
            "403": error(403, "app_name `service-discovery` is reserved for the nodes themselves."),
            "413": TOO_LARGE,
            "503": EXHAUSTED,
        },
    }


LIST_HEADERS = {
    "X-Registry-Index": {"description": "the node's state index of this answer",
                         "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "ETag": {"description": "strong tag of this listing's bytes (another for its gzip encoding)",
             "schema": {"type": "string", "pattern": '^"[0-9a-f]+(-gzip)?"$'}},
}

ADMIN_OFF = error(403, "The node was started without --enable-admin (every /admin/ path answers 403).")

PATHS: dict[str, dict] = {
    "/registry/list": {"get": {
        "operationId": "list", "tags": ["registry"], "summary": "Every listed instance, keyed by address",
        "description": "With ``index`` (the X-Registry-Index of an earlier answer) this is a watch, as "
                       "Consul's blocking queries: it answers at once when the node's state has changed since, "
                       "else holds until it changes or ``wait`` runs out.",
        "parameters": [
            {"name": "app_name", "in": "query", "schema": STR, "description": "only instances of this app"},
            {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["healthy", "expired"]}},
            {"name": "index", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
             "description": "hold until the node's index differs from this one"},
            {"name": "wait", "in": "query", "schema": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)?$"},
             "description": "longest hold of a watch: 500ms, 30s, 1m, or seconds (default 30 s, at most 5 min)"},
            {"name": "If-None-Match", "in": "header", "schema": STR,
             "description": "ETags of listings the client holds: 304 when the one it would get is among them"},
        ],
        "responses": {
            "200": {**ok("Instances in address order; gzip-encoded (Content-Encoding: gzip) for a client that "
                         "accepts gzip, unless the body is under 1 KiB.",
                         {"type": "object", "additionalProperties": ref("Instance")}),
                    "headers": LIST_HEADERS},
            "304": {"description": "The listing has the ETag named in If-None-Match: no body.",
                    "headers": LIST_HEADERS},
            "400": error(400, "status is neither healthy nor expired, or index or wait is malformed."),
            "429": ok("Every watch slot of the node is held (at most half its threads); retry after Retry-After.",
                      obj({"error": {"type": "string", "enum": ["too_many_watches"]}, "message": {"type": "string"}},
                          {"limit": {"type": "integer"}})),
        },
    }},
    "/registry/register_instance": {"post": register_operation("register_instance")},
    "/register/register_instance": {"post": register_operation("register_instance_legacy")},
    "/registry/deregister_instance": {"post": {
        "operationId": "deregister_instance", "tags": ["registry"],
        "summary": "Delete an instance everywhere (a tombstone that gossip spreads)",
        "requestBody": body(obj({"address": ref("Address")}, closed=False), "Other fields are ignored."),
        "responses": {"200": {**ok("Deregistered (also when the node did not hold it).", ref("Deregistration")),
                              "links": DEREGISTERED},
                      "400": error(400, BAD_BODY), "413": TOO_LARGE, "503": EXHAUSTED},
    }},
    "/registry/perform_update": {"get": {
        "operationId": "perform_update", "tags": ["registry"], "summary": "Run one gossip round now",
        "parameters": [{"name": "peer", "in": "query", "schema": ref("Address"),
                        "description": "exchange with this peer only: a live peer or a seed of the node"}],
        "responses": {
            "200": ok("What the round sent and received.", ref("RoundReport")),
            "400": error(400, "peer is not host:port."),
            "403": error(403, "peer is neither a live peer nor a seed of this node; nothing is sent."),
        },
    }},
    "/registry/digest": {"get": {
        "operationId": "digest", "tags": ["registry"],
        "summary": "A hash of the listed instances and their app names: equal on every node = converged",
        "responses": {"200": ok("The digest and the number of listed instances.", ref("Digest"))},
    }},
    "/registry/entries": {"get": {
        "operationId": "entries", "tags": ["registry"],
        "summary": "Everything the node holds, tombstones included, with versions and first-seen data",
        "responses": {"200": ok("Entries by address.", {"type": "object", "additionalProperties": ref("HeldEntry")})},
    }},
    "/health": {"get": {
        "operationId": "health", "tags": ["operations"], "summary": "The node's facts and whether it is degraded",
        "responses": {"200": ok("Healthy.", health("ok")),
                      "503": ok("Degraded: the gossip loop stalled or stopped, or the store's last write failed.",
                                health("degraded"))},
    }},
    "/metrics": {"get": {
        "operationId": "metrics", "tags": ["operations"], "summary": "Prometheus metrics (text format 0.0.4)",
        "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": STR}}}},
    }},
    "/openapi.json": {"get": {
        "operationId": "openapi", "tags": ["operations"], "summary": "This description",
        "responses": {"200": ok("OpenAPI 3.0 document.", {"type": "object"})},
    }},
    "/admin/clock": {
        "description": "Optional: served only by a node started with --enable-admin (a testing aid); "
                       "otherwise every method answers 403.",
        "get": {"operationId": "get_clock", "tags": ["admin"], "summary": "Read the wall-clock offset",
                "responses": {"200": ok("The offset and the wall clock it gives.", ref("Clock")),
                              "403": ADMIN_OFF}},
        "post": {"operationId": "set_clock", "tags": ["admin"], "summary": "Set the wall-clock offset",
                 "requestBody": body(obj({"offset": {**NUM, "minimum": -MAX_CLOCK_OFFSET, "maximum": MAX_CLOCK_OFFSET}},
                                         closed=False), "Seconds added to the node's wall clock."),
                 "responses": {"200": ok("The new offset.", ref("Clock")),
                               "400": error(400, "offset is missing, not a number or beyond 10 years."),
                               "403": ADMIN_OFF, "413": TOO_LARGE}},
    },
    "/gossip": {"post": {
        "operationId": "gossip", "tags": ["peer"],
        "summary": "Node-to-node exchange (peers only)",
        "description": "The peer protocol's messages (node/wire.py), signed when the node has gossip keys. "
                       "Not a client API: the message shapes are the nodes' business and change with them.",
        "requestBody": body({"type": "object"}, "A gossip message."),
        "responses": {
            "200": ok("The reply message.", {"type": "object"}),
            "400": error(400, "The message is not JSON, or malformed, or of a protocol version not spoken here."),
            "403": error(403, "Unsigned, badly signed or from another cluster (node has gossip keys); not merged."),
            "413": TOO_LARGE,
        },
    }},
}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "gossip-registry node",
        "version": "1",
        "description": "Client API of one registry node. Errors are JSON `{\"error\", \"message\"}` with a 4xx "
                       "or 5xx status; nothing is stored when a request is refused. Any path answers 413 to a "
                       "declared Content-Length over its limit and 400 to a malformed one; an unknown path "
                       "404 and a wrong method 405, in the same JSON shape.",
    },
    "tags": [{"name": "registry"}, {"name": "operations"},
             {"name": "admin", "description": "Optional, off unless --enable-admin"},
             {"name": "peer", "description": "Node-to-node; not for clients"}],
    "paths": PATHS,
    "components": {"schemas": SCHEMAS},
}
"""The document served at /openapi.json (read-only)."""
