"""The client listing of a snapshot as bytes: serialized once, gzip-encoded once, tagged once.

A listing depends only on the snapshot and on each entry's status, and every status
stays put between the edges ``protocol.status_window`` names, so the bytes built at one
reading serve every reading of the same snapshot inside that window, and a reading
outside it (an entry expired or went) rebuilds them. Filtered listings are cached
beside it, a few per window.

Each body carries a strong ETag, a hash of its bytes: equal bytes, equal tag, whatever
the snapshot (a node restarted from the same file answers the same tag), and any write
that changes what is listed changes it. Its gzip encoding is another representation
with its own tag (``-gzip`` appended), compressed on first demand and then kept.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field

from flask import jsonify

from . import protocol
from .protocol import Lease
from .snapshot import Snapshot

FILTERED_CACHED = 32
"""Filtered listings kept per listing (distinct app_name/status queries); more empty the cache."""
GZIP_LEVEL = 6
"""zlib's default: at 10,000 entries 1 MB becomes 65 KB in about 10 ms, once per listing."""
GZIP_MIN = 1024
"""Bodies shorter than this are sent as they are: gzip would save less than its own framing costs."""


@dataclass
class Body:
    """The JSON bytes of one listing, their strong ETag, and their gzip encoding once asked for."""

    data: bytes
    etag: str = ""  # unquoted; a hash of ``data``
    _gzip: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.etag:
            self.etag = hashlib.blake2b(self.data, digest_size=12).hexdigest()

    @property
    def compressible(self) -> bool:
        """Whether a client that accepts gzip gets this body gzip-encoded."""
        return len(self.data) >= GZIP_MIN

    @property
    def gzip_etag(self) -> str:
        """The ETag of the gzip-encoded representation (unquoted)."""
        return self.etag + "-gzip"

    def gzipped(self) -> bytes:
        """Return ``data`` gzip-encoded (compressed on the first call; concurrent first calls agree)."""
        if self._gzip is None:
            self._gzip = gzip.compress(self.data, compresslevel=GZIP_LEVEL, mtime=0)
        return self._gzip


@dataclass
class Listing:
    """The client listing of one snapshot over one status window, with its JSON bytes."""

    views: dict[str, dict]  # address -> the entry's client view, in address order (read-only)
    body: Body  # ``views`` as jsonify writes it
    # (app_name, status) filter -> the body of the listing it selects
    filtered: dict[tuple[str | None, str | None], Body] = field(default_factory=dict)

    def select(self, app_name: str | None, status: str | None) -> Body:
        """Return the body of the entries with this app_name and status (None: any)."""
        if app_name is None and status is None:
            return self.body
        key = (app_name, status)
        body = self.filtered.get(key)
        if body is None:
            out = {
                a: v for a, v in self.views.items()
                if (app_name is None or v["app_name"] == app_name) and (status is None or v["status"] == status)
            }
            if len(self.filtered) >= FILTERED_CACHED:
                self.filtered.clear()
            body = self.filtered[key] = Body(jsonify(out).get_data())
        return body


def build_listing(snap: Snapshot, now: float, lease: Lease) -> tuple[Listing, float, float]:
    """Return the listing of ``snap`` at ``now`` and the window ``[since, until)`` over which it holds."""
    views: dict[str, dict] = {}  # in address order, as the JSON lists them
    since, until = float("-inf"), float("inf")
    entries = snap.entries
    for address in sorted(entries):
        e = entries[address]
        if e.deleted:  # tombstones are never listed, whatever the instant
            continue
        lo, hi = protocol.status_window(e, now, lease)
        since, until = max(since, lo), min(until, hi)
        status = e.status(now, lease)
        if status != protocol.GONE:
            views[address] = {"app_name": e.app_name, "last_update": e.last_update, "status": status,
                              "version": e.version}
    return Listing(views, Body(jsonify(views).get_data())), since, until
