"""Gossip over UDP: one datagram per message, HTTP for the messages too big for one.

A request and its reply each travel in one datagram to and from the node's port number
(the HTTP API's, so ``--port`` and ``--seeds host:port`` name both). A datagram is::

    "SDG" | format (1) | kind (1) | id (8) | len (1) | cluster | len (1) | signature | payload

``payload`` is the msgpack encoding of the very JSON object ``wire`` builds (the same
message the HTTP transport sends as JSON); ``id`` is 8 random bytes chosen per request
and repeated in its reply, so a reply that answers no outstanding request is dropped.
The envelope is the keyring's (``keyring``): cluster id, and when keyed the raw HMAC of
``id + payload`` (request: empty context; reply: the request's signature), checked
before the payload is decoded. A refused request is counted by reason and answered with
a small unsigned ERROR datagram (status 403, the HTTP transport's answer); a malformed
one with status 400.

Size: a datagram longer than ``max_datagram`` (1,200 bytes by default, below any path
MTU) is never sent. A request that would not fit goes over HTTP (``HttpTransport``:
TCP push-pull) at once; a reply that would not fit is replaced by a TOO_BIG datagram
and the sender asks again over HTTP. Answering a message twice is safe: handling a
Summary reads only, and merging a Push again changes nothing (same versions).

Each request goes from a fresh socket on an ephemeral port, connected to the peer: the
kernel drops what does not come from the peer's port, reports ICMP port-unreachable at
once, and every exchange is a new conntrack flow whose first packet goes from initiator
to responder, as with TCP (one-way cuts by ``--ctdir ORIGINAL`` hold for UDP too).

Bytes counted are the datagrams' (UDP and IP headers, 28 bytes each way over IPv4, are
not, as TCP/IP headers are not for HTTP), on both sides alike.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped]  # no stubs in the dev dependencies

from .keyring import CLUSTER_HEADER, OPEN, REPLY, REQUEST, SIGNATURE_HEADER, Keyring, Rejected
from .transport import Endpoint, Forbidden, HttpTransport, Reply, Transport, TransportError, check_reply

log = logging.getLogger(__name__)

MAGIC = b"SDG"
FORMAT = 1
"""Version of the datagram layout; a datagram of another format is dropped."""

KIND_REQUEST, KIND_REPLY, KIND_TOO_BIG, KIND_ERROR = 1, 2, 3, 4
"""Datagram kinds; ERROR carries ``{"status", "error", "message"}`` like the HTTP transport's errors."""

ID_BYTES = 8
MAX_DATAGRAM = 1200
"""Default largest datagram sent: fits every path MTU of 1280 (IPv6's minimum) with headers."""
MAX_UDP_PAYLOAD = 65507
"""Largest datagram IPv4 carries."""
RESOLVE_TTL = 10.0
"""Seconds a peer's resolved address is reused (container names are looked up in Docker's DNS)."""

_DECODE_ERRORS = (ValueError, TypeError, RecursionError, msgpack.UnpackException)


class BadDatagram(ValueError):
    """Bytes that are not a datagram of this format."""


@dataclass(frozen=True)
class Datagram:
    """One decoded datagram: its kind, request id, envelope and (still encoded) payload."""

    kind: int
    id: bytes
    cluster: str
    signature: bytes
    payload: bytes

    @property
    def signed(self) -> bytes:
        """The bytes the signature covers: id and payload."""
        return self.id + self.payload

    def headers(self) -> dict[str, str]:
        """The envelope as the keyring's headers (absent when empty, as a missing HTTP header)."""
        headers = {}
        if self.cluster:
            headers[CLUSTER_HEADER] = self.cluster
        if self.signature:
            headers[SIGNATURE_HEADER] = base64.b64encode(self.signature).decode()
        return headers


def pack(kind: int, rid: bytes, headers: Mapping[str, str], payload: bytes = b"") -> bytes:
    """Return the datagram of ``kind`` for request ``rid`` with the envelope ``headers`` (a keyring seal)."""
    cluster = headers.get(CLUSTER_HEADER, "").encode()[:255]
    signature = headers.get(SIGNATURE_HEADER, "")
    try:
        raw = base64.b64decode(signature, validate=True)[:255]
    except (binascii.Error, ValueError):
        raw = b"\xff"  # not base64 at all: a signature no key makes
    return b"".join((MAGIC, bytes((FORMAT, kind)), rid, bytes((len(cluster),)), cluster,
                     bytes((len(raw),)), raw, payload))


def unpack(data: bytes) -> Datagram:
    """Decode a datagram's frame (not its payload); raise BadDatagram when it is not one."""
    head = len(MAGIC) + 2 + ID_BYTES
    if len(data) < head + 2 or not data.startswith(MAGIC) or data[3] != FORMAT:
        raise BadDatagram("not a gossip datagram of this format")
    rid = data[5:head]
    n = data[head]
    cluster_end = head + 1 + n
    if cluster_end >= len(data):
        raise BadDatagram("datagram cut short")
    m = data[cluster_end]
    sig_end = cluster_end + 1 + m
    if sig_end > len(data):
        raise BadDatagram("datagram cut short")
    try:
        cluster = data[head + 1:cluster_end].decode()
    except UnicodeDecodeError:
        raise BadDatagram("cluster id is not UTF-8") from None
    return Datagram(data[4], rid, cluster, data[cluster_end + 1:sig_end], data[sig_end:])


def encode(message: dict) -> bytes:
    """Serialize a gossip message (a ``wire`` JSON object) as msgpack."""
    return msgpack.packb(message, use_bin_type=True)


def decode(payload: bytes) -> object:
    """Deserialize a msgpack payload; raise ValueError when it is not one."""
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except _DECODE_ERRORS as exc:
        raise ValueError(f"payload is not msgpack: {type(exc).__name__}: {exc}") from None


def error_datagram(rid: bytes, cluster: str, status: int, error: str, message: str) -> bytes:
    """Return an ERROR datagram answering request ``rid``."""
    payload = encode({"status": status, "error": error, "message": message[:300]})
    return pack(KIND_ERROR, rid, {CLUSTER_HEADER: cluster}, payload)


# -- sending -------------------------------------------------------------------------------------


class UdpTransport:
    """Sends each gossip message in one datagram and waits for the reply with the same id.

    A message (or its reply) too big for ``max_datagram`` goes through ``fallback``
    (HTTP to the same host and port by default); ``fallbacks`` counts those exchanges.
    ``timeout`` bounds the whole send, fallback included.
    """

    def __init__(self, keyring: Keyring = OPEN, max_datagram: int = MAX_DATAGRAM,
                 fallback: Transport | None = None) -> None:
        self.keyring = keyring
        self.max_datagram = max_datagram
        self.fallback: Transport = fallback if fallback is not None else HttpTransport(keyring=keyring)
        self.fallbacks = 0
        self._resolved: dict[str, tuple[float, int, tuple]] = {}
        self._lock = threading.Lock()

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        deadline = time.monotonic() + timeout
        payload = encode(message)
        rid = os.urandom(ID_BYTES)
        seal = self.keyring.seal(rid + payload, REQUEST)
        datagram = pack(KIND_REQUEST, rid, seal, payload)
        if len(datagram) > self.max_datagram:
            return self._over_http(peer, message, deadline, 0, 0)
        try:
            answer = self._exchange(peer, datagram, rid, deadline)
        except TransportError:
            with self._lock:
                self._resolved.pop(peer, None)  # look the name up again next time
            raise
        if answer.kind == KIND_TOO_BIG:
            return self._over_http(peer, message, deadline, len(datagram), answer.size)
        if answer.kind == KIND_ERROR:
            raise _error_of(peer, answer.datagram.payload)
        check_reply(self.keyring, peer, answer.datagram.signed, answer.datagram.headers(), seal)
        try:
            body = decode(answer.datagram.payload)
        except ValueError as exc:
            raise TransportError(f"{peer}: reply {exc}") from None
        if not isinstance(body, dict):
            raise TransportError(f"{peer}: reply is not a msgpack map")
        return Reply(body, len(datagram), answer.size)

    def _over_http(self, peer: str, message: dict, deadline: float, sent: int, received: int) -> Reply:
        """Send ``message`` through the fallback in the time left, adding the datagrams' bytes."""
        with self._lock:
            self.fallbacks += 1
        left = deadline - time.monotonic()
        if left <= 0:
            raise TransportError(f"{peer}: no time left to send over HTTP what one datagram cannot carry")
        reply = self.fallback.send(peer, message, left)
        return Reply(reply.body, reply.sent + sent, reply.received + received)

    def _exchange(self, peer: str, datagram: bytes, rid: bytes, deadline: float) -> _Answer:
        """Send ``datagram`` to ``peer`` and return the first answer to ``rid`` before ``deadline``."""
        family, address = self._resolve(peer)
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect(address)
                sock.send(datagram)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                    data = sock.recv(MAX_UDP_PAYLOAD)
                    try:
                        got = unpack(data)
                    except BadDatagram:
                        continue
                    if got.id == rid and got.kind in (KIND_REPLY, KIND_TOO_BIG, KIND_ERROR):
                        return _Answer(got.kind, got, len(data))
                    log.debug("dropped a datagram from %s that answers no outstanding request", peer)
        except TimeoutError:
            raise TransportError(f"{peer}: no reply by the deadline (datagram lost, peer down or cut)") from None
        except OSError as exc:
            raise TransportError(f"{peer}: {type(exc).__name__}: {exc}") from None

    def _resolve(self, peer: str) -> tuple[int, tuple]:
        """Return the socket family and address of ``peer`` (host:port), looked up at most every RESOLVE_TTL."""
        now = time.monotonic()
        with self._lock:
            cached = self._resolved.get(peer)
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        host, _, port = peer.rpartition(":")
        try:
            info = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_DGRAM)
        except (OSError, ValueError) as exc:
            raise TransportError(f"{peer}: cannot resolve: {exc}") from None
        family, _, _, _, address = info[0]
        with self._lock:
            self._resolved[peer] = (now + RESOLVE_TTL, family, address)
        return family, address

    def close(self) -> None:
        """Close the fallback's idle connections."""
        close = getattr(self.fallback, "close", None)
        if close is not None:
            close()


@dataclass(frozen=True)
class _Answer:
    kind: int
    datagram: Datagram
    size: int


def _error_of(peer: str, payload: bytes) -> TransportError:
    """Return the exception an ERROR datagram stands for (Forbidden for status 403)."""
    try:
        body = decode(payload)
        status, error, message = int(body["status"]), str(body["error"]), str(body["message"])  # type: ignore[index]
    except (ValueError, TypeError, KeyError):
        return TransportError(f"{peer}: malformed error datagram")
    kind = Forbidden if status == 403 else TransportError
    return kind(f"{peer}: {status} {error}: {message}")


# -- serving -------------------------------------------------------------------------------------


class UdpServer:
    """Serves gossip datagrams on ``host:port`` for ``endpoint``: checks, handles, answers.

    A daemon thread reads datagrams and hands each to a pool of ``workers`` threads (a
    Probe's answer waits up to a timeout); when ``backlog`` datagrams already wait, more
    are dropped, as a full socket buffer would. ``answer`` is the whole protocol of one
    datagram, without sockets.
    """

    def __init__(self, endpoint: Endpoint, host: str, port: int, *, max_datagram: int = MAX_DATAGRAM,
                 workers: int = 4, backlog: int = 256) -> None:
        self.endpoint = endpoint
        self.max_datagram = max_datagram
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host.strip("[]"), port))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.5)  # how soon ``close`` is noticed
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="udp-gossip")
        self.backlog = backlog
        self._slots = threading.BoundedSemaphore(backlog)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-server", daemon=True)

    @property
    def address(self) -> tuple:
        """The socket's bound address."""
        return self.sock.getsockname()

    def start(self) -> UdpServer:
        """Start serving in a daemon thread; return self."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop reading, let the answers under way finish, close the socket."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._pool.shutdown(wait=True)
        self.sock.close()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                data, source = self.sock.recvfrom(MAX_UDP_PAYLOAD)
            except TimeoutError:
                continue
            except OSError as exc:  # e.g. an ICMP error queued on the socket: keep serving
                if self._closed.is_set():
                    return
                log.debug("udp receive failed: %s", exc)
                continue
            if not self._slots.acquire(blocking=False):
                log.warning("gossip datagram from %s dropped: %d already waiting", source, self.backlog)
                continue
            try:
                self._pool.submit(self._serve, data, source)
            except RuntimeError:  # pool shut down under us
                self._slots.release()
                return

    def _serve(self, data: bytes, source: tuple) -> None:
        try:
            out = self.answer(data)
            if out is not None:
                self.sock.sendto(out, source)
        except OSError as exc:  # the way back is cut: the sender will time out
            log.debug("answer to %s not sent: %s", source, exc)
        except Exception:  # noqa: BLE001 - one datagram never stops the server
            log.exception("gossip datagram from %s failed", source)
        finally:
            self._slots.release()

    def answer(self, data: bytes) -> bytes | None:
        """Return the datagram answering ``data``, or None when it is to be dropped unanswered."""
        try:
            request = unpack(data)
        except BadDatagram:
            return None
        if request.kind != KIND_REQUEST:
            return None  # a reply that found its socket closed (late), or noise
        keyring = self.endpoint.keyring
        headers = request.headers()
        try:  # before decoding: a refused message never reaches the store
            keyring.check(request.signed, headers, REQUEST)
        except Rejected as exc:
            self.endpoint.rejected(exc.reason)
            log.info("gossip datagram refused (%s): %s", exc.reason, exc)
            return error_datagram(request.id, keyring.cluster, 403, "forbidden", f"gossip message refused: {exc}")
        try:
            reply = self.endpoint.handle(decode(request.payload))  # type: ignore[arg-type]
        except (ValueError, TypeError, RecursionError) as exc:  # ProtocolError is a ValueError
            return error_datagram(request.id, keyring.cluster, 400, "bad_request", f"bad gossip message: {exc}")
        except Exception as exc:  # noqa: BLE001 - answer 500, log, keep serving
            log.exception("gossip handler failed")
            return error_datagram(request.id, keyring.cluster, 500, "internal_error", f"{type(exc).__name__}: {exc}")
        payload = encode(reply)
        seal = keyring.seal(request.id + payload, REPLY, headers.get(SIGNATURE_HEADER, ""))
        out = pack(KIND_REPLY, request.id, seal, payload)
        if len(out) > self.max_datagram:
            out = pack(KIND_TOO_BIG, request.id, {CLUSTER_HEADER: keyring.cluster})
        self.endpoint.served(len(data), len(out))
        return out
