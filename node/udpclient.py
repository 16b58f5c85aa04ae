"""The sending half of gossip over UDP (format: ``udp``): requests out, replies matched by id.

Each request goes from a fresh socket on an ephemeral port, connected to the peer: the
kernel drops what does not come from the peer's port, reports ICMP port-unreachable at
once, and every exchange is a new conntrack flow whose first packet goes from initiator
to responder, as with TCP (one-way cuts by ``--ctdir ORIGINAL`` hold for UDP too).

``send`` waits for one reply; ``replies`` sends a round's requests at once and yields
their replies as they come, read on the calling thread (``select.poll``), so a round at
rest needs no thread of its own per exchange, and no exchange waits for a slower one.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .keyring import OPEN, REQUEST, Keyring
from .transport import Forbidden, HttpTransport, Reply, Transport, TransportError, check_reply
from .udp import (
    ID_BYTES,
    KIND_ERROR,
    KIND_REPLY,
    KIND_REQUEST,
    KIND_TOO_BIG,
    MAX_DATAGRAM,
    MAX_UDP_PAYLOAD,
    BadDatagram,
    Datagram,
    decode,
    encode,
    pack,
    unpack,
)

log = logging.getLogger(__name__)

NO_UDP_TTL = 60.0
"""Seconds a peer that refused a datagram (ICMP port unreachable) is asked over HTTP only."""
RESOLVE_TTL = 60.0
"""Seconds a peer's resolved address is reused (container names are looked up in Docker's DNS, one
query each for A and AAAA through dockerd: at 100 nodes, reused for 10 s, nearly every peer was
looked up again every 10 s, some 1,000 lookups a second); a failed exchange drops it at once, so
a peer that moved is looked up on its next message."""


@dataclass(frozen=True)
class _Request:
    """One request ready to go: its message (for HTTP), id, seal and datagram."""

    peer: str
    message: dict
    rid: bytes
    seal: dict[str, str]
    datagram: bytes


class UdpTransport:
    """Sends each gossip message in one datagram and waits for the reply with the same id.

    A message (or its reply) too big for ``max_datagram`` goes through ``fallback``
    (HTTP to the same host and port by default), and so does every message for
    ``NO_UDP_TTL`` seconds to a peer that refused a datagram (no UDP server there: a node
    of a version before datagrams, so a cluster can be upgraded one node at a time);
    ``fallbacks`` counts those messages. ``timeout`` bounds the whole send, fallback included.
    """

    def __init__(self, keyring: Keyring = OPEN, max_datagram: int = MAX_DATAGRAM,
                 fallback: Transport | None = None) -> None:
        self.keyring = keyring
        self.max_datagram = max_datagram
        self.fallback: Transport = fallback if fallback is not None else HttpTransport(keyring=keyring)
        self.fallbacks = 0
        self._resolved: dict[str, tuple[float, int, tuple]] = {}
        self._no_udp: dict[str, float] = {}  # peer -> until when it is asked over HTTP only
        self._lock = threading.Lock()

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        reply = self.send_all([(peer, message)], timeout)[0]
        if isinstance(reply, TransportError):
            raise reply
        return reply

    def send_all(self, requests: Sequence[tuple[str, dict]], timeout: float) -> list[Reply | TransportError]:
        """Send every ``(peer, message)`` at once; return each one's reply or error, in order, within ``timeout``."""
        out: list[Reply | TransportError] = [TransportError("no answer")] * len(requests)
        for i, reply in self.replies(requests, timeout):
            out[i] = reply
        return out

    def replies(self, requests: Sequence[tuple[str, dict]],
                timeout: float) -> Iterator[tuple[int, Reply | TransportError]]:
        """Send every ``(peer, message)`` at once; yield ``(index, reply or error)`` as each is settled.

        Replies are read on this thread and yielded as they come, so the caller can go on
        with each at once, not after the slowest. A request too big for a datagram, or to a
        peer without UDP, goes over HTTP once the datagrams are out; a reply too big for one
        (TOO_BIG) is asked again over HTTP when it comes: each within the same deadline.
        """
        deadline = time.monotonic() + timeout
        prepared = [self._prepare(peer, message) for peer, message in requests]
        sockets: dict[int, tuple[int, socket.socket]] = {}  # fd -> (request index, socket)
        over_http: list[tuple[int, bool]] = []  # (index, refused as a datagram)
        try:
            for i, req in enumerate(prepared):
                if len(req.datagram) > self.max_datagram or self._no_udp.get(req.peer, 0.0) > time.monotonic():
                    over_http.append((i, False))
                    continue
                try:
                    sock = self._sent(req)
                except _Refused:
                    over_http.append((i, True))
                except TransportError as exc:
                    yield i, self._failed(req.peer, exc)
                else:
                    sockets[sock.fileno()] = (i, sock)
            for i, refused in over_http:
                yield i, self._over_http(prepared[i], deadline, 0, refused=refused)
            yield from self._collect(sockets, prepared, deadline)
        finally:
            for _, sock in sockets.values():
                sock.close()

    def _collect(self, sockets: dict[int, tuple[int, socket.socket]], prepared: list[_Request],
                 deadline: float) -> Iterator[tuple[int, Reply | TransportError]]:
        """Yield answers as they come until every socket has one or ``deadline``; then the timeouts.

        A socket with its answer is closed and dropped.
        """
        poller = select.poll()
        for fd in sockets:
            poller.register(fd, select.POLLIN)
        while sockets:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in poller.poll(left * 1000):
                i, sock = sockets[fd]
                settled = self._readable(sock, prepared[i], deadline)
                if settled is None:
                    continue  # not an answer to this request: keep waiting
                poller.unregister(fd)
                del sockets[fd]
                sock.close()
                yield i, settled
        for i, sock in list(sockets.values()):
            sock.close()
            yield i, self._failed(prepared[i].peer, TransportError(
                f"{prepared[i].peer}: no reply by the deadline (datagram lost, peer down or cut)"))
        sockets.clear()

    def _readable(self, sock: socket.socket, req: _Request, deadline: float) -> Reply | TransportError | None:
        """Read ``req``'s socket: its reply or error, asked again over HTTP if need be; None: nothing for it."""
        try:
            answer = self._received(sock, req)
        except _Refused:
            return self._over_http(req, deadline, 0, refused=True)
        except TransportError as exc:
            return self._failed(req.peer, exc)
        if answer is None:
            return None
        if answer.kind == KIND_TOO_BIG:
            return self._over_http(req, deadline, answer.size)
        return self._settle(req, answer)

    def _prepare(self, peer: str, message: dict) -> _Request:
        payload = encode(message)
        rid = os.urandom(ID_BYTES)
        seal = self.keyring.seal(rid + payload, REQUEST)
        return _Request(peer, message, rid, seal, pack(KIND_REQUEST, rid, seal, payload))

    def _sent(self, req: _Request) -> socket.socket:
        """Return a non-blocking socket connected to the peer that has sent ``req``'s datagram."""
        family, address = self._resolve(req.peer)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(address)
            sock.send(req.datagram)
        except ConnectionRefusedError:
            sock.close()
            raise _Refused(f"{req.peer}: datagram refused (ICMP port unreachable)") from None
        except OSError as exc:
            sock.close()
            raise TransportError(f"{req.peer}: {type(exc).__name__}: {exc}") from None
        return sock

    def _received(self, sock: socket.socket, req: _Request) -> _Answer | None:
        """Read one datagram from ``sock``: its answer to ``req``, or None for anything else."""
        try:
            data = sock.recv(MAX_UDP_PAYLOAD)
        except BlockingIOError:
            return None
        except ConnectionRefusedError:
            raise _Refused(f"{req.peer}: datagram refused (ICMP port unreachable)") from None
        except OSError as exc:
            raise TransportError(f"{req.peer}: {type(exc).__name__}: {exc}") from None
        try:
            got = unpack(data)
        except BadDatagram:
            return None
        if got.id == req.rid and got.kind in (KIND_REPLY, KIND_TOO_BIG, KIND_ERROR):
            return _Answer(got.kind, got, len(data))
        log.debug("dropped a datagram from %s that answers no outstanding request", req.peer)
        return None

    def _settle(self, req: _Request, answer: _Answer) -> Reply | TransportError:
        """Return the reply an answer datagram carries, or the error it stands for."""
        if answer.kind == KIND_ERROR:
            return _error_of(req.peer, answer.datagram.payload)
        try:
            check_reply(self.keyring, req.peer, answer.datagram.signed, answer.datagram.headers(), req.seal)
            body = decode(answer.datagram.payload)
        except TransportError as exc:
            return exc
        except ValueError as exc:
            return TransportError(f"{req.peer}: reply {exc}")
        if not isinstance(body, dict):
            return TransportError(f"{req.peer}: reply is not a msgpack map")
        return Reply(body, len(req.datagram), answer.size)

    def _failed(self, peer: str, exc: TransportError) -> TransportError:
        with self._lock:
            self._resolved.pop(peer, None)  # look the name up again next time
        return exc

    def _over_http(self, req: _Request, deadline: float, received: int,
                   refused: bool = False) -> Reply | TransportError:
        """Send ``req`` through the fallback in the time left, adding the datagrams' bytes.

        ``refused``: the peer's host refused the datagram. If HTTP then answers, the peer
        serves no UDP (a node of a version before datagrams) and is asked over HTTP only for
        ``NO_UDP_TTL``; if HTTP fails too, nothing listens there yet (a node starting), and
        the next request tries a datagram again.
        """
        with self._lock:
            self.fallbacks += 1
        left = deadline - time.monotonic()
        if left <= 0:
            return TransportError(f"{req.peer}: no time left to send over HTTP what one datagram cannot carry")
        sent = len(req.datagram) if received else 0
        try:
            reply = self.fallback.send(req.peer, req.message, left)
        except TransportError as exc:
            return exc
        if refused:
            with self._lock:
                self._no_udp[req.peer] = time.monotonic() + NO_UDP_TTL
            log.info("%s refuses gossip datagrams but answers HTTP: asking it over HTTP for %gs", req.peer, NO_UDP_TTL)
        return Reply(reply.body, reply.sent + sent, reply.received + received)

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


class _Refused(TransportError):
    """The peer's host answered a datagram with ICMP port unreachable: nothing serves UDP there."""


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
