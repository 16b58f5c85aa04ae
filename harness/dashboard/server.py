"""The dashboard's web server: the page, its state as server-sent events, and the controls.

Routes: ``/`` the page (static ``index.html``, ``app.js``, ``style.css``, no build step);
``GET /api/state`` the current state as JSON; ``GET /api/events`` the state as a stream of
server-sent events, one per change (a comment line every ``KEEPALIVE`` s otherwise); ``POST
/api/action`` ``{"op": ..., ...}`` a control (400 with a JSON error on bad arguments, 502
when the harness operation fails). Served on 127.0.0.1 only, by werkzeug's threaded
server, which flushes every event as it is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib import resources

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from ..errors import HarnessError
from .hub import BadAction, Hub

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_PORT = 8089
KEEPALIVE = 15.0
"""Seconds between keep-alive comments on an idle event stream."""
STATIC = str(resources.files(__package__).joinpath("static"))


bp = Blueprint("dashboard", __name__)


def get_hub() -> Hub:
    return current_app.extensions["sd_hub"]


@bp.get("/")
def index():
    return send_from_directory(STATIC, "index.html")


@bp.get("/static/<path:name>")
def static_file(name: str):
    return send_from_directory(STATIC, name)


@bp.get("/api/state")
def state():
    """The current state as JSON."""
    return Response(get_hub().text, mimetype="application/json")


@bp.get("/api/events")
def events():
    """The state as server-sent events, one per change."""
    return Response(stream(get_hub()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.post("/api/action")
def action():
    """Apply one control ``{"op": ..., ...}``."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return jsonify(error="bad_request", message="body must be a JSON object with an op"), 400
    args = {k: v for k, v in body.items() if k != "op"}
    try:
        result = get_hub().act(body.get("op"), args)  # type: ignore[arg-type]
    except BadAction as exc:
        return jsonify(error="bad_request", message=str(exc)), 400
    except HarnessError as exc:
        log.warning("%s failed: %s", body.get("op"), exc)
        return jsonify(error=type(exc).__name__, message=str(exc)), 502
    return jsonify(ok=True, result=result if isinstance(result, (dict, list, str)) else None)


def create_app(hub: Hub) -> Flask:
    """Return the dashboard app for ``hub`` (started or not)."""
    app = Flask(__name__, static_folder=None)
    app.extensions["sd_hub"] = hub
    app.register_blueprint(bp)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return jsonify(error=(exc.name or "error").lower().replace(" ", "_"), message=exc.description), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("dashboard request failed")
        return jsonify(error="internal_error", message=f"{type(exc).__name__}: {exc}"), 500

    return app


def stream(hub: Hub, keepalive: float = KEEPALIVE) -> Iterator[str]:
    """Yield the hub's state as server-sent events: at once, then at every change."""
    seen = -1
    while True:
        version, text = hub.wait(seen, keepalive)
        if version == seen:
            yield ": keepalive\n\n"
            continue
        seen = version
        yield f"id: {version}\ndata: {text}\n\n"


def make_server(hub: Hub, port: int = DEFAULT_PORT):
    """Return the dashboard's threaded server on 127.0.0.1:``port`` (0: a free port), not yet serving."""
    from werkzeug.serving import make_server as werkzeug_server  # noqa: PLC0415

    return werkzeug_server(HOST, port, create_app(hub), threaded=True)


def serve(hub: Hub, port: int = DEFAULT_PORT, ready=None) -> None:
    """Serve the dashboard on 127.0.0.1:``port`` until interrupted; ``ready(url)`` is called once it listens."""
    server = make_server(hub, port)
    if ready is not None:
        ready(f"http://{HOST}:{server.server_port}/")
    try:
        server.serve_forever()
    finally:
        server.server_close()
