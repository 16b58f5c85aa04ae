"""The UDP half of a node's gossip server: one datagram in, one datagram out (format: ``udp``).

A daemon thread reads datagrams on the node's port number. It answers a read-only
request (a Summary, a Ping: no write, no wait) itself, and hands the others (a Push
merges and writes, a Probe waits for a ping) to a small pool: at rest every datagram
is a Summary, and a thread hand-off costs more CPU than the answer. ``UdpServer.answer``
checks the envelope before decoding, hands the message to the same ``Endpoint.handle``
that serves ``POST /gossip``, and signs the reply, or answers TOO_BIG (ask again over
HTTP) or an ERROR datagram (403 refused, 400 malformed).
"""

from __future__ import annotations

import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .keyring import CLUSTER_HEADER, REPLY, REQUEST, SIGNATURE_HEADER, Rejected
from .transport import Endpoint
from .udp import (
    AMPLIFICATION,
    KIND_REPLY,
    KIND_REQUEST,
    KIND_TOO_BIG,
    MAX_DATAGRAM,
    MAX_UDP_PAYLOAD,
    BadDatagram,
    decode,
    encode,
    error_datagram,
    pack,
    unpack,
)
from .wire import PING, SUMMARY

log = logging.getLogger(__name__)

INLINE = frozenset({SUMMARY, PING})
"""Request types answered on the reading thread: they read the store and never wait."""

class UdpServer:
    """Serves gossip datagrams on ``host:port`` for ``endpoint``: checks, handles, answers.

    A daemon thread reads datagrams, answers read-only ones (``INLINE``) itself and hands
    the others to a pool of ``workers`` threads (a Probe's answer waits up to a timeout);
    when ``backlog`` datagrams already wait, more are dropped, as a full socket buffer
    would. ``answer`` is the whole protocol of one datagram, without sockets.
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
            try:
                admitted = self._admit(data)
            except Exception:  # noqa: BLE001 - one datagram never stops the server
                log.exception("gossip datagram from %s failed", source)
                continue
            if not isinstance(admitted, _Admitted):
                self._send(admitted, source)
            elif admitted.type in INLINE:
                self._send(self._respond(admitted), source)
            elif not self._slots.acquire(blocking=False):
                log.warning("gossip datagram from %s dropped: %d already waiting", source, self.backlog)
            else:
                try:
                    self._pool.submit(self._serve_pooled, admitted, source)
                except RuntimeError:  # pool shut down under us
                    self._slots.release()
                    return

    def _serve_pooled(self, admitted: _Admitted, source: tuple) -> None:
        try:
            self._send(self._respond(admitted), source)
        except Exception:  # noqa: BLE001 - one datagram never stops the server
            log.exception("gossip datagram from %s failed", source)
        finally:
            self._slots.release()

    def _send(self, out: bytes | None, source: tuple) -> None:
        if out is None:
            return
        try:
            self.sock.sendto(out, source)
        except OSError as exc:  # the way back is cut: the sender will time out
            log.debug("answer to %s not sent: %s", source, exc)

    def answer(self, data: bytes) -> bytes | None:
        """Return the datagram answering ``data``, or None when it is to be dropped unanswered."""
        admitted = self._admit(data)
        return self._respond(admitted) if isinstance(admitted, _Admitted) else admitted

    def _admit(self, data: bytes) -> _Admitted | bytes | None:
        """Check and decode ``data``: the request to answer, or its final answer (ERROR datagram; None: drop)."""
        try:
            request = unpack(data)
        except BadDatagram:
            return None
        if request.kind != KIND_REQUEST:
            return None  # a reply that found its socket closed (late), or noise
        keyring, limit = self.endpoint.keyring, AMPLIFICATION * len(data)
        headers = request.headers()
        try:  # before decoding: a refused message never reaches the store
            keyring.check(request.signed, headers, REQUEST)
        except Rejected as exc:
            self.endpoint.rejected(exc.reason)
            log.info("gossip datagram refused (%s): %s", exc.reason, exc)
            return error_datagram(request.id, keyring.cluster, 403, "forbidden", f"gossip message refused: {exc}",
                                  limit)
        try:
            message = decode(request.payload)
        except ValueError as exc:
            return error_datagram(request.id, keyring.cluster, 400, "bad_request", f"bad gossip message: {exc}", limit)
        return _Admitted(len(data), request.id, headers.get(SIGNATURE_HEADER, ""), message)

    def _respond(self, admitted: _Admitted) -> bytes | None:
        """Return the datagram answering an admitted request (signed reply, TOO_BIG, or ERROR)."""
        keyring, rid, limit = self.endpoint.keyring, admitted.id, AMPLIFICATION * admitted.size
        try:
            reply = self.endpoint.handle(admitted.message)  # type: ignore[arg-type]
        except (ValueError, TypeError, RecursionError) as exc:  # ProtocolError is a ValueError
            return error_datagram(rid, keyring.cluster, 400, "bad_request", f"bad gossip message: {exc}", limit)
        except Exception as exc:  # noqa: BLE001 - answer 500, log, keep serving
            log.exception("gossip handler failed")
            return error_datagram(rid, keyring.cluster, 500, "internal_error", f"{type(exc).__name__}: {exc}", limit)
        payload = encode(reply)
        out = pack(KIND_REPLY, rid, keyring.seal(rid + payload, REPLY, admitted.signature), payload)
        if len(out) > min(self.max_datagram, limit):
            out = pack(KIND_TOO_BIG, rid, {CLUSTER_HEADER: keyring.cluster})
        self.endpoint.served(admitted.size, len(out))
        return out


@dataclass(frozen=True)
class _Admitted:
    """A request datagram whose envelope passed the keyring and whose payload decoded."""

    size: int  # bytes of the datagram
    id: bytes
    signature: str  # the request's signature header, which the reply's seal covers
    message: object

    @property
    def type(self) -> object:
        """The message's ``type``, for dispatch (checked by the handler, not here)."""
        return self.message.get("type") if isinstance(self.message, dict) else None
