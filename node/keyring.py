"""Gossip authentication: a keyring that signs and checks every message with HMAC-SHA256.

Each message travels with two headers (``X-SD-Cluster``, ``X-SD-Signature``), over HTTP
and in the in-memory network alike. The signature is the HMAC-SHA256 of::

    "sd-gossip" 0 direction 0 cluster 0 context 0 body

where ``body`` is the encoded message exactly as sent, ``direction`` is ``request`` or
``reply`` (a reply cannot be replayed as a request) and ``context`` is empty for a
request and the request's signature for its reply (a reply answers one request only).
The cluster id is signed, so a message of another cluster is refused even when it
shares a key.

The first key signs, every key verifies: a key rotates with no downtime by adding the
new key second everywhere, then moving it first everywhere, then removing the old one.
A keyring without keys is *open*: it sends unsigned messages and accepts them; a keyed
one refuses unsigned messages (no silent downgrade). Every node checks the cluster id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

KEY_BYTES = 32
"""Length of a gossip key (HMAC-SHA256 keys as long as its output)."""

CLUSTER_HEADER = "X-SD-Cluster"
SIGNATURE_HEADER = "X-SD-Signature"

REQUEST = "request"
REPLY = "reply"

UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
WRONG_CLUSTER = "wrong_cluster"
REASONS = (UNSIGNED, BAD_SIGNATURE, WRONG_CLUSTER)
"""Why a message is refused: the ``reason`` label of ``sd_gossip_messages_rejected_total``."""

DEFAULT_CLUSTER = "default"

_CLUSTER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def generate_key() -> str:
    """Return a fresh key: base64 of 32 random bytes."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_keys(text: str | Sequence[str]) -> tuple[bytes, ...]:
    """Decode comma-separated base64 keys; raise ValueError naming the bad one by position only."""
    items = text.split(",") if isinstance(text, str) else list(text)
    keys = []
    for i, item in enumerate((s.strip() for s in items if s.strip()), start=1):
        try:
            key = base64.b64decode(item, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"gossip key {i} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"gossip key {i} must be {KEY_BYTES} bytes, got {len(key)}")
        keys.append(key)
    return tuple(keys)


def check_cluster(cluster: str) -> str:
    """Return ``cluster`` if it is a valid cluster id (1-64 of [A-Za-z0-9._-]); else raise ValueError."""
    if not isinstance(cluster, str) or not _CLUSTER.fullmatch(cluster):
        raise ValueError(f"cluster must be 1-64 letters, digits, '.', '_' or '-', got {cluster!r}")
    return cluster


class Rejected(Exception):
    """A message failed the keyring's check; ``reason`` is one of ``REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Keyring:
    """The keys and cluster id a node signs and checks its gossip with (no keys: open)."""

    keys: tuple[bytes, ...] = field(default=(), repr=False)
    cluster: str = DEFAULT_CLUSTER
    # Per key and direction, an HMAC that has absorbed the fixed prefix: copied per message.
    _macs: Mapping[tuple[bytes, str], hmac.HMAC] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_cluster(self.cluster)
        cluster = self.cluster.encode()
        macs = {}
        for key in self.keys:
            for direction in (REQUEST, REPLY):
                prefix = b"sd-gossip\0" + direction.encode() + b"\0" + cluster + b"\0"
                macs[key, direction] = hmac.new(key, prefix, hashlib.sha256)
        object.__setattr__(self, "_macs", macs)

    @property
    def open(self) -> bool:
        """Whether this keyring has no key (gossip not authenticated)."""
        return not self.keys

    def _mac(self, key: bytes, direction: str, context: str, body: bytes) -> bytes:
        mac = self._macs[key, direction].copy()
        mac.update(context.encode() + b"\0")
        mac.update(body)
        return mac.digest()

    def seal(self, body: bytes, direction: str, context: str = "") -> dict[str, str]:
        """Return the headers that go with ``body``: the cluster id and, when keyed, the signature."""
        headers = {CLUSTER_HEADER: self.cluster}
        if self.keys:
            signature = self._mac(self.keys[0], direction, context, body)
            headers[SIGNATURE_HEADER] = base64.b64encode(signature).decode()
        return headers

    def check(self, body: bytes, headers: Mapping[str, str], direction: str, context: str = "") -> None:
        """Accept ``body`` and its ``headers`` or raise Rejected (wrong cluster, unsigned, bad signature)."""
        cluster = headers.get(CLUSTER_HEADER)
        if cluster is not None and cluster != self.cluster:
            raise Rejected(WRONG_CLUSTER, f"message of cluster {cluster[:64]!r}, this node is in {self.cluster!r}")
        if not self.keys:
            return
        signature = headers.get(SIGNATURE_HEADER)
        if not signature:
            raise Rejected(UNSIGNED, "message is not signed and this node requires gossip keys")
        try:
            given = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            raise Rejected(BAD_SIGNATURE, "signature is not valid base64") from None
        # The signing key is first on most nodes most of the time: usually one HMAC.
        if not any(hmac.compare_digest(given, self._mac(k, direction, context, body)) for k in self.keys):
            raise Rejected(BAD_SIGNATURE, "signature matches no gossip key of this node")


OPEN = Keyring()
"""The keyring of a node without keys, in the default cluster."""
