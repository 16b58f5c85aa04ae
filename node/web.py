"""Request helpers shared by the blueprints and the endpoints served ahead of Flask.

The served node, the JSON body, and the JSON error answer of every exception a request
may raise, so that a view and a WSGI endpoint answer the same input alike.
"""

from __future__ import annotations

import json
import logging
import sqlite3

from flask import abort, current_app, request
from werkzeug.exceptions import HTTPException

from .gossip import Node
from .versions import VersionsExhausted

log = logging.getLogger(__name__)


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


def parse_json(data: bytes):
    """Return ``data`` parsed as ``read_json`` parses a request body, or abort with 400 as it does."""
    try:
        body = json.loads(data)
    except RecursionError:
        abort(400, "JSON body is nested too deeply")
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        body = None
    if body is None:
        abort(400, "body must be JSON")
    return body


def error_answer(exc: BaseException) -> tuple[int, dict, list[tuple[str, str]]]:
    """Return the status, JSON body and extra headers a request that raised ``exc`` is answered with (logged)."""
    if isinstance(exc, HTTPException):
        assert exc.code is not None
        # The exception's own headers but its HTML Content-Type: a 405 names the methods in Allow.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        return exc.code, {"error": exc.name.lower().replace(" ", "_"), "message": exc.description}, headers
    if isinstance(exc, VersionsExhausted):
        log.error("write refused: %s", exc)
        return 503, {"error": "versions_exhausted", "message": str(exc)}, []
    if isinstance(exc, sqlite3.Error):
        # Requests read an in-memory snapshot: a database error is a write that was not
        # committed (disk full, I/O error), and nothing was stored. /health reports it.
        log.error("write failed: %s: %s", type(exc).__name__, exc)
        return 503, {"error": "store_unavailable", "message": f"the write was not stored: {exc}"}, []
    log.error("unhandled error", exc_info=exc)
    return 500, {"error": "internal_error", "message": f"{type(exc).__name__}: {exc}"}, []
