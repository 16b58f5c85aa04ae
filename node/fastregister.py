"""``POST register_instance`` served ahead of Flask: the heartbeat every instance sends.

Registrations and renewals are the client API's hot path (every instance, every ttl/3),
and Flask's request context, routing, body parsing and response object cost more than
the write itself. This WSGI middleware answers them directly, through the very functions
the Flask view uses (``registry.register_from``, ``web.parse_json``, ``web.error_answer``),
so answers, status lines and error bodies are byte for byte the view's. Every other
method or path goes on to Flask (a GET there is still its 405).
"""

from __future__ import annotations

import json

from werkzeug.http import HTTP_STATUS_CODES

from .gossip import Node
from .registry import register_from
from .web import error_answer, parse_json

PATHS = frozenset({"/registry/register_instance", "/register/register_instance"})
"""The registration paths (the design note also spells it /register/...)."""


def dumps(value: object) -> bytes:
    """Return ``value`` as Flask's ``jsonify`` writes it (compact, ASCII, keys in order, a final newline)."""
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"


def status_line(code: int) -> str:
    """Return the status line werkzeug sends for ``code`` (``201 CREATED``)."""
    return f"{code} {HTTP_STATUS_CODES.get(code, 'UNKNOWN').upper()}"


class RegisterEndpoint:
    """WSGI middleware answering ``POST`` on the registration paths; everything else passes through."""

    def __init__(self, app, node: Node) -> None:
        self.app = app
        self.node = node

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in PATHS:
            return self.app(environ, start_response)
        headers: list[tuple[str, str]] = []
        try:
            view, status = register_from(parse_json(read_body(environ)), self.node)
        except Exception as exc:  # noqa: BLE001 - every error leaves as the API's JSON body
            status, view, headers = error_answer(exc)
        data = dumps(view)
        start_response(status_line(status),
                       [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers])
        return [data]


def read_body(environ) -> bytes:
    """Return the request body as Flask reads it: all of a server-terminated input, else Content-Length bytes.

    ``BodyLimit`` (outermost) has refused a Content-Length over the limit or malformed.
    """
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    length = environ.get("CONTENT_LENGTH")
    return stream.read(int(length)) if length else b""
