"""How gossip messages travel: HTTP between real nodes, an in-memory network in tests.

A transport carries one JSON object to a peer and brings its reply back; at the other
end it hands the object to the peer's ``Endpoint`` (a ``gossip.Node``). Both
transports serialize every message to JSON bytes, and both report the bytes each
message took, to the sender in its ``Reply`` and to the receiver through
``Endpoint.served``: over HTTP the request or response as written on the socket
(start line, headers, body), in memory the encoded body. The node counts them.

Both also carry the same envelope: the headers of the sender's ``Keyring`` (cluster id
and signature, see ``keyring``). The receiver checks a request before decoding it and
the sender checks the reply; a refused request is ``Forbidden`` (HTTP 403), a refused
reply ``ReplyRejected``. Each refusal is counted by the side that refuses.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from .deadline import DeadlineConnection
from .keyring import CLUSTER_HEADER, OPEN, REPLY, REQUEST, SIGNATURE_HEADER, Keyring, Rejected
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


class Forbidden(TransportError):
    """The peer refused our message: unsigned, badly signed or of another cluster (HTTP 403)."""


class ReplyRejected(TransportError):
    """The peer's reply failed our keyring's check; ``reason`` is one of ``keyring.REASONS``."""

    def __init__(self, peer: str, rejected: Rejected) -> None:
        super().__init__(f"{peer}: reply rejected ({rejected.reason}): {rejected}")
        self.reason = rejected.reason


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

    keyring: Keyring
    """Checks the requests it is sent and signs its replies."""

    def handle(self, message: dict) -> dict:
        """Answer one message; raise ValueError (ProtocolError) when it is malformed."""
        ...

    def served(self, received: int, sent: int) -> None:
        """Take note of the bytes one answered message took each way."""
        ...

    def rejected(self, reason: str) -> None:
        """Take note of one message refused by the keyring (a ``keyring.REASONS``)."""
        ...


def check_reply(keyring: Keyring, peer: str, body: bytes, headers: Mapping[str, str | None],
                request_headers: Mapping[str, str]) -> None:
    """Accept a reply to a request sent with ``request_headers``, or raise ReplyRejected."""
    present = {k: v for k, v in headers.items() if v is not None}
    try:
        keyring.check(body, present, REPLY, request_headers.get(SIGNATURE_HEADER, ""))
    except Rejected as exc:
        raise ReplyRejected(peer, exc) from None


# -- HTTP ----------------------------------------------------------------------------------------


class HttpTransport:
    """POSTs messages to ``http://<peer>/gossip`` over kept-alive connections.

    Built on ``http.client`` with a small pool (at most one idle connection per peer,
    ``max_idle`` in all): a gossip exchange costs a fraction of a millisecond of CPU
    and sends only the headers HTTP/1.1 needs. ``timeout`` bounds a whole ``send``
    (connect, request, reply), not each read (``deadline``).
    """

    def __init__(self, max_idle: int = 128, keyring: Keyring = OPEN) -> None:
        self._idle: OrderedDict[str, DeadlineConnection] = OrderedDict()
        self._lock = threading.Lock()
        self.max_idle = max_idle
        self.keyring = keyring

    def _take(self, peer: str, deadline: float) -> tuple[DeadlineConnection, bool]:
        with self._lock:
            conn = self._idle.pop(peer, None)
        reused = conn is not None
        if conn is None:
            host, _, port = peer.rpartition(":")
            conn = DeadlineConnection(host.strip("[]"), int(port))
        conn.set_deadline(deadline)
        return conn, reused

    def _give_back(self, peer: str, conn: DeadlineConnection) -> None:
        with self._lock:
            old = self._idle.pop(peer, None)
            self._idle[peer] = conn
            evicted = [self._idle.popitem(last=False)[1] for _ in range(len(self._idle) - self.max_idle)]
        for c in [old, *evicted]:
            if c is not None:
                c.close()

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        body = dumps(message)
        seal = self.keyring.seal(body, REQUEST)
        headers = {"Content-Type": "application/json", **seal}
        deadline = time.monotonic() + timeout
        for attempt in range(2):
            conn, reused = self._take(peer, deadline)
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
            error = Forbidden if resp.status == 403 else TransportError
            raise error(f"{peer}: HTTP {resp.status}: {data[:200]!r}")
        check_reply(self.keyring, peer, data, {h: resp.headers.get(h) for h in _AUTH_HEADERS}, seal)
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


_AUTH_HEADERS = (CLUSTER_HEADER, SIGNATURE_HEADER)
_AUTH_ENVIRON = tuple((h, "HTTP_" + h.upper().replace("-", "_")) for h in _AUTH_HEADERS)
"""The envelope's headers, and their WSGI environ keys."""

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
            return _error(start_response, 405, "method_not_allowed", "gossip takes POST", [("Allow", "POST")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(start_response, 400, "bad_request", "bad Content-Length")
        if length > self.max_body:
            return _error(start_response, 413, "request_entity_too_large", "gossip message too large")
        body = environ["wsgi.input"].read(length)
        headers = {name: environ[key] for name, key in _AUTH_ENVIRON if key in environ}
        try:  # before decoding: a refused message never reaches the store
            self.endpoint.keyring.check(body, headers, REQUEST)
        except Rejected as exc:
            return self._refuse(start_response, exc)
        try:
            reply = self.endpoint.handle(json.loads(body))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and ProtocolError are ValueErrors
            return _error(start_response, 400, "bad_request", f"bad gossip message: {exc}")
        except Exception as exc:  # noqa: BLE001 - answer 500 as JSON, log, keep serving
            log.exception("gossip handler failed")
            return _error(start_response, 500, "internal_error", f"{type(exc).__name__}: {exc}")
        data = dumps(reply)
        size = str(len(data))
        seal = self.endpoint.keyring.seal(data, REPLY, headers.get(SIGNATURE_HEADER, ""))
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", size), *seal.items()])
        head = _REPLY_HEAD + len(size) + sum(len(k) + len(v) + 4 for k, v in seal.items())
        self.endpoint.served(_request_bytes(environ, len(body)), head + len(data))
        return [data]

    def _refuse(self, start_response, exc: Rejected):
        """Answer 403 to a message the keyring refused, and count it."""
        self.endpoint.rejected(exc.reason)
        log.info("gossip message refused (%s): %s", exc.reason, exc)
        return _error(start_response, 403, "forbidden", f"gossip message refused: {exc}")


def _error(start_response, status: int, error: str, message: str, headers: list[tuple[str, str]] | None = None):
    data = dumps({"error": error, "message": message})
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(headers or [])])
    return [data]


# -- in memory -----------------------------------------------------------------------------------


class InMemoryNetwork:
    """A network of in-process nodes whose links can be cut, healed and made lossy.

    ``cut(a, b)`` stops messages that ``a`` starts towards ``b`` (a one-way partition:
    ``b`` can still reach ``a`` and get its reply); ``partition`` cuts both ways between
    groups. ``set_delay(a, s)`` delays what ``a`` sends by ``s`` seconds: an exchange whose
    request and reply delays add up past the sender's timeout is still delivered and
    handled, but its reply comes too late and the sender gets a TransportError (as a
    real node drops a reply after its deadline). Messages are JSON round-tripped like on the wire, in the same envelope
    (``carry`` takes the encoded body and its headers, as a test forging one needs). With ``copy=False`` they
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
        self._delay: dict[str, float] = {}  # address -> seconds added to what it sends
        self._rng = rng or random.Random(0)
        self._lock = threading.Lock()

    def attach(self, address: str, endpoint: Endpoint) -> InMemoryTransport:
        """Serve ``endpoint`` at ``address``; return the transport that node sends with."""
        self._endpoints[address] = endpoint
        return InMemoryTransport(self, address, endpoint)

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
        """Restore every link and remove loss and delays."""
        self._cut.clear()
        self._loss = 0.0
        self._delay.clear()

    def set_delay(self, address: str, seconds: float) -> None:
        """Delay every message ``address`` sends by ``seconds`` (0 removes the delay)."""
        if seconds > 0:
            self._delay[address] = seconds
        else:
            self._delay.pop(address, None)

    def set_down(self, address: str, down: bool = True) -> None:
        """Make a node unreachable (as if killed) or reachable again."""
        (self._down.add if down else self._down.discard)(address)

    def set_loss(self, fraction: float) -> None:
        """Drop each message with this probability."""
        self._loss = fraction

    def deliver(self, src: str, dst: str, message: dict, keyring: Keyring = OPEN,
                timeout: float | None = None) -> Reply:
        """Carry one request/response, signed and checked with ``keyring``; raise TransportError when it cannot pass.

        With ``timeout``, an exchange delayed (``set_delay``) past it is handled by ``dst``
        but its reply is lost to ``src``.
        """
        body = dumps(message)
        seal = keyring.seal(body, REQUEST)
        answer, reply, headers = self.carry(src, dst, body, seal, message)
        late = self._delay.get(src, 0.0) + self._delay.get(dst, 0.0)
        if timeout is not None and late > timeout:
            raise TransportError(f"{dst}: reply {late:.3f}s late, past the {timeout:g}s timeout")
        check_reply(keyring, dst, reply, headers, seal)
        return Reply(json.loads(reply) if self.copy else answer, len(body), len(reply))

    def carry(self, src: str, dst: str, body: bytes, headers: Mapping[str, str],
              message: dict | None = None) -> tuple[dict, bytes, dict[str, str]]:
        """Carry an encoded request and its headers to ``dst``; return (reply, its bytes, its headers).

        Raise Forbidden when ``dst``'s keyring refuses the request (which it counts),
        TransportError when the request cannot pass. ``message`` is the decoded ``body``,
        handed over as is when ``copy`` is off.
        """
        if (src, dst) in self._cut or dst in self._down or src in self._down:
            raise TransportError(f"{dst}: unreachable from {src}")
        endpoint = self._endpoints.get(dst)
        if endpoint is None:
            raise TransportError(f"{dst}: no such node")
        with self._lock:
            lost = self._loss and self._rng.random() < self._loss
        if lost:
            raise TransportError(f"{dst}: message lost")
        try:
            endpoint.keyring.check(body, headers, REQUEST)
        except Rejected as exc:
            endpoint.rejected(exc.reason)
            raise Forbidden(f"{dst}: HTTP 403: gossip message refused: {exc}") from None
        answer = endpoint.handle(json.loads(body) if self.copy or message is None else message)
        reply = dumps(answer)
        endpoint.served(len(body), len(reply))
        return answer, reply, endpoint.keyring.seal(reply, REPLY, headers.get(SIGNATURE_HEADER, ""))


class InMemoryTransport:
    """The sending end of one node on an InMemoryNetwork; it signs with its node's keyring."""

    def __init__(self, network: InMemoryNetwork, address: str, endpoint: Endpoint) -> None:
        self.network = network
        self.address = address
        self.endpoint = endpoint

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        return self.network.deliver(self.address, peer, message, self.endpoint.keyring, timeout)
