"""How gossip messages travel: HTTP between real nodes, an in-memory network in tests.

Both transports serialize every message to JSON bytes and count them, so the in-memory
network exercises the same encoding and byte accounting as the real one.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

Handler = Callable[[dict], dict]

GOSSIP_PATH = "/gossip"


class TransportError(Exception):
    """A message could not be delivered or answered (peer down, cut, slow or broken)."""


@dataclass(frozen=True)
class Reply:
    """A peer's answer with the bytes that crossed the wire each way (headers included)."""

    body: dict
    sent: int
    received: int


class Transport(Protocol):
    """Sends one gossip message to a peer and returns its reply."""

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        """Deliver ``message`` to ``peer``; raise TransportError on any failure."""
        ...


def encode(message: dict) -> bytes:
    """Serialize a message compactly."""
    return json.dumps(message, separators=(",", ":")).encode()


class HttpTransport:
    """POSTs messages to ``http://<peer>/gossip`` over kept-alive connections.

    Built on ``http.client`` with a small pool (at most one idle connection per peer,
    ``max_idle`` in all): a gossip exchange costs a fraction of a millisecond of CPU
    and sends only the headers HTTP/1.1 needs.
    """

    def __init__(self, max_idle: int = 128) -> None:
        self._idle: OrderedDict[str, http.client.HTTPConnection] = OrderedDict()
        self._lock = threading.Lock()
        self.max_idle = max_idle

    def _take(self, peer: str, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            conn = self._idle.pop(peer, None)
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        host, _, port = peer.rpartition(":")
        return http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout), False

    def _give_back(self, peer: str, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            old = self._idle.pop(peer, None)
            self._idle[peer] = conn
            evicted = [self._idle.popitem(last=False)[1] for _ in range(len(self._idle) - self.max_idle)]
        for c in [old, *evicted]:
            if c is not None:
                c.close()

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        body = encode(message)
        headers = {"Content-Type": "application/json"}
        for attempt in range(2):
            conn, reused = self._take(peer, timeout)
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
        # Request line + Host, Accept-Encoding, Content-Length, Content-Type; status line + headers.
        sent = len(body) + len(f"POST {GOSSIP_PATH} HTTP/1.1\r\n") + len(peer) + 8 + 26 + 18 + 32 + 2
        received = len(data) + len(f"HTTP/1.1 {resp.status} {resp.reason}\r\n") + _header_bytes(resp.headers)
        if resp.status != 200:
            raise TransportError(f"{peer}: HTTP {resp.status}: {data[:200]!r}")
        try:
            return Reply(json.loads(data), sent, received)
        except ValueError:
            raise TransportError(f"{peer}: reply is not JSON") from None

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            conns, self._idle = list(self._idle.values()), OrderedDict()
        for c in conns:
            c.close()


def _header_bytes(headers: Iterable) -> int:
    return sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2


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
        self._handlers: dict[str, Handler] = {}
        self._cut: set[tuple[str, str]] = set()
        self._down: set[str] = set()
        self._loss = 0.0
        self._rng = rng or random.Random(0)
        self._lock = threading.Lock()
        self.messages = 0
        self.bytes = 0

    def attach(self, address: str, handler: Handler) -> InMemoryTransport:
        """Serve ``handler`` at ``address``; return the transport that node sends with."""
        self._handlers[address] = handler
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
        handler = self._handlers.get(dst)
        if handler is None:
            raise TransportError(f"{dst}: no such node")
        with self._lock:
            lost = self._loss and self._rng.random() < self._loss
        if lost:
            raise TransportError(f"{dst}: message lost")
        body = encode(message)
        answer = handler(json.loads(body) if self.copy else message)
        reply = encode(answer)
        with self._lock:
            self.messages += 2
            self.bytes += len(body) + len(reply)
        return Reply(json.loads(reply) if self.copy else answer, len(body), len(reply))


class InMemoryTransport:
    """The sending end of one node on an InMemoryNetwork."""

    def __init__(self, network: InMemoryNetwork, address: str) -> None:
        self.network = network
        self.address = address

    def send(self, peer: str, message: dict, timeout: float) -> Reply:
        return self.network.deliver(self.address, peer, message)
