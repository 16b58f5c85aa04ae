"""WSGI middleware refusing a request body by its declared size, before anything reads it."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from .wire import dumps


class BodyLimit:
    """Answer 413 (JSON) to a request whose Content-Length exceeds its path's limit, 400 to a malformed one.

    ``limits`` maps a path to its own limit (``/gossip`` takes larger bodies than the
    client API); any other path gets ``default``. The body is left unread: under waitress
    (``__main__``) it is at most the largest of these limits, the server refusing larger
    ones from the headers alone.
    """

    def __init__(self, app, default: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    def __call__(self, environ, start_response):
        declared = environ.get("CONTENT_LENGTH") or "0"
        if not (declared.isascii() and declared.isdigit()):
            return _error(start_response, 400, "bad_request", f"bad Content-Length {declared[:40]!r}")
        limit = self.limits.get(environ.get("PATH_INFO", ""), self.default)
        if int(declared) > limit:
            return _error(start_response, 413, "request_entity_too_large",
                          f"body of {declared} bytes is over this path's limit of {limit}")
        return self.app(environ, start_response)


def _error(start_response, status: int, error: str, message: str):
    data = dumps({"error": error, "message": message})
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
