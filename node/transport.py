"""How gossip messages travel: HTTP between real nodes, an in-memory network in tests.

A transport carries one JSON object to a peer and brings its reply back; at the other
end it hands the object to the peer's ``Endpoint`` (a ``gossip.Node``). Both
transports serialize every message to JSON bytes, and both report the bytes each
message took, to the sender in its ``Reply`` and to the receiver through
``Endpoint.served``: over HTTP the request or response as written on the socket
(start line, headers, body), in memory the encoded body. The node counts them.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from .wire import dumps

log = logging.getLogger(__name__)

GOSSIP_PATH = "/gossip"

SERVER_IDENT = "sd-node"
"""What the node's HTTP server (waitress, see ``__main__``) names itself in ``Server``."""

SERVER_ADDED_BYTES = len(f"Server: {SERVER_IDENT}\r\n") + len("Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n")
"""Bytes of the headers waitress adds to every response after the application's own:
``Server`` and ``Date`` (an IMF-fixdate, always 29 characters)."""


class TransportError(Exception):
    """A message could not be delivered or answered (peer down, cut, slow or broken)."""


@dataclass(frozen=True)
class Reply:
    """A peer's answer with the bytes that crossed the wire each way (HTTP headers included)."""

    body: dict
    sent: int
    received: int


class Transport(Protocol):
    """Sends one gossip message to a peer and returns its reply."""

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        """Deliver ``message`` to ``peer``; raise TransportError on any failure."""
        ...


class Endpoint(Protocol):
    """What a transport serves at a node's address."""

    def handle(self, message: dict) -> dict:
        """Answer one message; raise ValueError (ProtocolError) when it is malformed."""
        ...

    def served(self, received: int, sent: int) -> None:
        """Take note of the bytes one answered message took each way."""
        ...


# -- HTTP ----------------------------------------------------------------------------------------


class _CountingConnection(http.client.HTTPConnection):
    """An HTTPConnection that counts the bytes it writes: request line, headers and body."""

    written = 0

    def send(self, data) -> None:
        self.written += len(data)
        super().send(data)


class HttpTransport:
    """POSTs messages to ``http://<peer>/gossip`` over kept-alive connections.

    Built on ``http.client`` with a small pool (at most one idle connection per peer,
    ``max_idle`` in all): a gossip exchange costs a fraction of a millisecond of CPU
    and sends only the headers HTTP/1.1 needs.
    """

    def __init__(self, max_idle: int = 128) -> None:
        self._idle: OrderedDict[str, _CountingConnection] = OrderedDict()
        self._lock = threading.Lock()
        self.max_idle = max_idle

    def _take(self, peer: str, timeout: float) -> tuple[_CountingConnection, bool]:
        with self._lock:
            conn = self._idle.pop(peer, None)
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        host, _, port = peer.rpartition(":")
        return _CountingConnection(host.strip("[]"), int(port), timeout=timeout), False

    def _give_back(self, peer: str, conn: _CountingConnection) -> None:
        with self._lock:
            old = self._idle.pop(peer, None)
            self._idle[peer] = conn
            evicted = [self._idle.popitem(last=False)[1] for _ in range(len(self._idle) - self.max_idle)]
        for c in [old, *evicted]:
            if c is not None:
                c.close()

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        body = dumps(message)
        headers = {"Content-Type": "application/json"}
        for attempt in range(2):
            conn, reused = self._take(peer, timeout)
            conn.written = 0
            try:
                conn.request("POST", GOSSIP_PATH, body, headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                # A kept-alive connection the peer closed while idle: retry once on a new one.
                stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
                if reused and stale and attempt == 0:
                    continue
                raise TransportError(f"{peer}: {type(exc).__name__}: {exc}") from None
            break
        if resp.will_close:
            conn.close()
        else:
            self._give_back(peer, conn)
        if resp.status != 200:
            raise TransportError(f"{peer}: HTTP {resp.status}: {data[:200]!r}")
        try:
            reply = json.loads(data)
        except ValueError:
            raise TransportError(f"{peer}: reply is not JSON") from None
        status_line = f"HTTP/1.1 {resp.status} {resp.reason}"
        return Reply(reply, conn.written, _message_bytes(status_line, resp.headers.items(), len(data)))

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            conns, self._idle = list(self._idle.values()), OrderedDict()
        for c in conns:
            c.close()


def _message_bytes(start_line: str, headers: Iterable[tuple[str, str]], body: int) -> int:
    """Return the size of an HTTP/1.1 message: start line, ``Name: value`` lines, blank line, body."""
    return len(start_line) + 2 + sum(len(k) + len(v) + 4 for k, v in headers) + 2 + body


def _request_bytes(environ: dict, body: int) -> int:
    """Return the size of the HTTP request a WSGI ``environ`` describes, as it was received."""
    target = environ.get("REQUEST_URI") or environ.get("RAW_URI") or environ.get("PATH_INFO", "")
    # "METHOD target HTTP/1.1\r\n", the headers, "\r\n", the body.
    n = len(environ.get("REQUEST_METHOD", "")) + len(target) + len(environ.get("SERVER_PROTOCOL", "HTTP/1.1")) + 6
    # A header "Name: value\r\n" is the environ key HTTP_<NAME>, 5 longer than the name,
    # except Content-Type and Content-Length: CONTENT_TYPE and CONTENT_LENGTH, as long.
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            n += len(key) + len(value) - 1
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.get(key)
        if value:
            n += len(key) + len(value) + 4
    return n + body


_REPLY_HEAD = len("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \r\n\r\n") + SERVER_ADDED_BYTES
"""Bytes of a gossip reply's head, but for the digits of its Content-Length (HTTP/1.0 is as long)."""


class GossipEndpoint:
    """WSGI middleware serving ``POST /gossip`` ahead of the app; everything else passes through.

    The HTTP server half of the transport: it hands each message to ``endpoint`` and
    reports the bytes of the request and response (those waitress adds included, see
    ``SERVER_ADDED_BYTES``). Gossip is the hot path between nodes (fanout x rounds per
    second on every node), so it skips the web framework; errors keep the API's JSON shape.
    """

    def __init__(self, app, endpoint: Endpoint, max_body: int) -> None:
        self.app = app
        self.endpoint = endpoint
        self.max_body = max_body

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != GOSSIP_PATH:
            return self.app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            return _error(start_response, 405, "method_not_allowed", "gossip takes POST")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(start_response, 400, "bad_request", "bad Content-Length")
        if length > self.max_body:
            return _error(start_response, 413, "request_entity_too_large", "gossip message too large")
        body = environ["wsgi.input"].read(length)
        try:
            reply = self.endpoint.handle(json.loads(body))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and ProtocolError are ValueErrors
            return _error(start_response, 400, "bad_request", f"bad gossip message: {exc}")
        except Exception as exc:  # noqa: BLE001 - answer 500 as JSON, log, keep serving
            log.exception("gossip handler failed")
            return _error(start_response, 500, "internal_error", f"{type(exc).__name__}: {exc}")
        data = dumps(reply)
        size = str(len(data))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", size)])
        self.endpoint.served(_request_bytes(environ, len(body)), _REPLY_HEAD + len(size) + len(data))
        return [data]


def _error(start_response, status: int, error: str, message: str):
    data = dumps({"error": error, "message": message})
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


# -- in memory -----------------------------------------------------------------------------------


class InMemoryNetwork:
    """A network of in-process nodes whose links can be cut, healed and made lossy.

    ``cut(a, b)`` stops messages that ``a`` starts towards ``b`` (a one-way partition:
    ``b`` can still reach ``a`` and get its reply); ``partition`` cuts both ways between
    groups. Messages are JSON round-tripped like on the wire. With ``copy=False`` they
    are still encoded (bytes are counted the same) but each side gets the other's very
    objects, which saves the decoding: for senders and handlers that never change a
    message once sent or received, such as ``Node`` (used by the simulator).
    """

    def __init__(self, rng: random.Random | None = None, *, copy: bool = True) -> None:
        self.copy = copy
        self._endpoints: dict[str, Endpoint] = {}
        self._cut: set[tuple[str, str]] = set()
        self._down: set[str] = set()
        self._loss = 0.0
        self._rng = rng or random.Random(0)
        self._lock = threading.Lock()

    def attach(self, address: str, endpoint: Endpoint) -> InMemoryTransport:
        """Serve ``endpoint`` at ``address``; return the transport that node sends with."""
        self._endpoints[address] = endpoint
        return InMemoryTransport(self, address)

    def cut(self, src: str, dst: str) -> None:
        """Drop every message ``src`` starts towards ``dst``."""
        self._cut.add((src, dst))

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between nodes of different groups, both ways."""
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self._cut.update({(x, y), (y, x)})

    def heal(self) -> None:
        """Restore every link and remove loss."""
        self._cut.clear()
        self._loss = 0.0

    def set_down(self, address: str, down: bool = True) -> None:
        """Make a node unreachable (as if killed) or reachable again."""
        (self._down.add if down else self._down.discard)(address)

    def set_loss(self, fraction: float) -> None:
        """Drop each message with this probability."""
        self._loss = fraction

    def deliver(self, src: str, dst: str, message: dict) -> Reply:
        """Carry one request/response; raise TransportError when it cannot pass."""
        if (src, dst) in self._cut or dst in self._down or src in self._down:
            raise TransportError(f"{dst}: unreachable from {src}")
        endpoint = self._endpoints.get(dst)
        if endpoint is None:
            raise TransportError(f"{dst}: no such node")
        with self._lock:
            lost = self._loss and self._rng.random() < self._loss
        if lost:
            raise TransportError(f"{dst}: message lost")
        body = dumps(message)
        answer = endpoint.handle(json.loads(body) if self.copy else message)
        reply = dumps(answer)
        endpoint.served(len(body), len(reply))
        return Reply(json.loads(reply) if self.copy else answer, len(body), len(reply))


class InMemoryTransport:
    """The sending end of one node on an InMemoryNetwork."""

    def __init__(self, network: InMemoryNetwork, address: str) -> None:
        self.network = network
        self.address = address

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        return self.network.deliver(self.address, peer, message)
