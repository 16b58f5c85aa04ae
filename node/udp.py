"""Gossip over UDP: one datagram per message, HTTP for the messages too big for one.

A request and its reply each travel in one datagram to and from the node's port number
(the HTTP API's, so ``--port`` and ``--seeds host:port`` name both). A datagram is::

    0xD1 (format 1) | kind (1) | id (4) | len (1) | cluster | len (1) | signature | payload

``payload`` is the msgpack encoding of the very JSON object ``wire`` builds (the same
message the HTTP transport sends as JSON), its keys sent as their index in ``WIRE_KEYS``
(a fixed, append-only table: at rest a message is mostly keys) and a Summary's bucket
hashes and root as integers (9 bytes, not up to 17 of hex; a short Summary's 32-bit bucket
hashes 5; decoded back to the same spelling).
``id`` is 4 random bytes chosen per request and repeated in its reply, so a reply that
answers no outstanding request is dropped.
The envelope is the keyring's (``keyring``): cluster id, and when keyed the raw HMAC of
``id + payload`` (request: empty context; reply: the request's signature), checked
before the payload is decoded. A refused request is counted by reason and answered with
a small unsigned ERROR datagram (status 403, the HTTP transport's answer); a malformed
one with status 400. The server is ``udpserver.UdpServer``.

Size: a datagram longer than ``max_datagram`` (1,200 bytes by default, below any path
MTU) is never sent. A request that would not fit goes over HTTP (``HttpTransport``:
TCP push-pull) at once; a reply that would not fit is replaced by a TOO_BIG datagram
and the sender asks again over HTTP. Answering a message twice is safe: handling a
Summary reads only, and merging a Push again changes nothing (same versions). No answer
is more than ``AMPLIFICATION`` times its request (an error's message is cut to fit), so a
forged source address cannot make a node an amplifier: a bigger reply goes over HTTP,
whose handshake a forger cannot complete.

The sending side is ``udpclient.UdpTransport``.

Bytes counted are the datagrams' (UDP and IP headers, 28 bytes each way over IPv4, are
not, as TCP/IP headers are not for HTTP), on both sides alike.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import msgpack  # type: ignore[import-untyped]  # no stubs in the dev dependencies

from .keyring import CLUSTER_HEADER, SIGNATURE_HEADER
from .wire import SUMMARY

log = logging.getLogger(__name__)

FORMAT = 0xD1
"""First byte of every datagram: the layout's version (a datagram of another format is dropped).
Not ASCII, so stray text (an HTTP request sent to the UDP port) is told apart at once."""

KIND_REQUEST, KIND_REPLY, KIND_TOO_BIG, KIND_ERROR = 1, 2, 3, 4
"""Datagram kinds; ERROR carries ``{"status", "error", "message"}`` like the HTTP transport's errors."""

ID_BYTES = 4
"""Length of a request id: with the kernel matching the peer's address and port on a connected
socket, 32 random bits leave a blind forger one chance in 2**48."""
MAX_DATAGRAM = 1200
"""Default largest datagram sent: fits every path MTU of 1280 (IPv6's minimum) with headers."""
MAX_UDP_PAYLOAD = 65507
"""Largest datagram IPv4 carries."""
AMPLIFICATION = 4
"""A reply datagram is at most this many times the request's size (else TOO_BIG: HTTP)."""
WIRE_KEYS = ("v", "type", "from", "buckets", "digest", "entries", "want", "applied", "target", "alive",
             "status", "error", "message", "root")
"""Keys of the wire's objects, each sent as its index here. Append-only: an index keeps its key
for good; a key not in the table travels as a string."""
_KEY_INDEX = {k: i for i, k in enumerate(WIRE_KEYS)}

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
    return b"".join((bytes((FORMAT, kind)), rid, bytes((len(cluster),)), cluster, bytes((len(raw),)), raw, payload))


def unpack(data: bytes) -> Datagram:
    """Decode a datagram's frame (not its payload); raise BadDatagram when it is not one."""
    head = 2 + ID_BYTES
    if len(data) < head + 2 or data[0] != FORMAT:
        raise BadDatagram("not a gossip datagram of this format")
    rid = data[2:head]
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
    return Datagram(data[1], rid, cluster, data[cluster_end + 1:sig_end], data[sig_end:])


def encode(message: dict) -> bytes:
    """Serialize a gossip message (a ``wire`` JSON object, no nested objects) as msgpack, keys as indexes."""
    index = _KEY_INDEX
    if message.get("type") == SUMMARY and isinstance(message.get("buckets"), list):
        message = {**message, "buckets": [_hex_as_int(h) for h in message["buckets"]]}
        if "root" in message:
            message["root"] = _hex_as_int(message["root"])
    return msgpack.packb({index.get(k, k): v for k, v in message.items()}, use_bin_type=True)


def _hex_as_int(h: object) -> object:
    """Return the integer a hash's hex spelling stands for, when ``format(_, "x")`` gives it back; else ``h``."""
    if type(h) is str:
        try:
            value = int(h, 16)
        except ValueError:
            return h
        if value >= 0 and format(value, "x") == h:
            return value
    return h


def decode(payload: bytes) -> object:
    """Deserialize a msgpack payload, keys back to names; raise ValueError when it is not one."""
    try:
        return msgpack.unpackb(payload, raw=False, strict_map_key=False, object_hook=_named)
    except _DECODE_ERRORS as exc:
        raise ValueError(f"payload is not msgpack: {type(exc).__name__}: {exc}") from None


def _named(obj: dict) -> dict:
    """Return a decoded map with its index keys replaced by their names; raise ValueError on others."""
    out = {}
    for k, v in obj.items():
        if type(k) is int:
            if not 0 <= k < len(WIRE_KEYS):
                raise ValueError(f"unknown key index {k}")
            k = WIRE_KEYS[k]
        elif type(k) is not str:
            raise ValueError("map keys must be strings or key indexes")
        out[k] = v
    if out.get("type") == SUMMARY and isinstance(out.get("buckets"), list):
        out["buckets"] = [format(h, "x") if type(h) is int and h >= 0 else h for h in out["buckets"]]
        if type(out.get("root")) is int and out["root"] >= 0:
            out["root"] = format(out["root"], "x")
    return out


def error_datagram(rid: bytes, cluster: str, status: int, error: str, message: str, limit: int) -> bytes | None:
    """Return an ERROR datagram answering request ``rid`` in at most ``limit`` bytes (the message
    cut to fit), or None when even a bare one would be longer."""
    def datagram(text: str) -> bytes:
        return pack(KIND_ERROR, rid, {CLUSTER_HEADER: cluster},
                    encode({"status": status, "error": error, "message": text}))

    bare = datagram("")
    room = min(300, limit - len(bare) - 2)  # a longer string's length prefix takes up to 2 more bytes
    if room <= 0:
        return bare if len(bare) <= limit else None
    return datagram(message.encode()[:room].decode(errors="ignore"))
