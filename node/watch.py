"""Blocking reads of the registry listing, as Consul's blocking queries: ``?index=N&wait=30s``.

The index of a node's state is the generation of its store's snapshot: every write
(a registration, a merge that changed something, a sweep) installs the next one. Every
``GET /registry/list`` answer carries it in ``X-Registry-Index``. A request that names
``index=N`` answers at once when the generation is not N (changed since, or the node
restarted and counts again from its load), else holds until a write installs a new
snapshot or ``wait`` runs out (default 30 s, at most 5 min), and then answers with the
listing and index of that moment: the same index means nothing was written meanwhile.
A status that changes with time alone (healthy to expired) is no write and wakes no
watch; the sweep that removes the entry later is one.

A held request keeps one of the node's WSGI worker threads (``Config.threads``), so a
node holds at most ``threads // 2`` watches (at least one): the other threads stay free
for gossip, /health and plain reads. A watch over the limit is refused at once with 429
and ``Retry-After: 1`` rather than answered as if nothing changed: an immediate 200 with
the same index would send a client straight back, a busy loop that occupies the threads
the limit protects; 429 tells it to back off. Plain reads (no ``index``) are never refused.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from flask import abort, jsonify, make_response

from .snapshot import Snapshot
from .store import Store

INDEX_HEADER = "X-Registry-Index"
DEFAULT_WAIT = 30.0
"""Seconds a watch holds when the request names an index but no wait."""
MAX_WAIT = 300.0
"""Longest hold in seconds; a longer wait is cut to it (as Consul does)."""
RETRY_AFTER = 1
"""Seconds a refused watcher is asked to wait before it tries again."""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_wait(text: str) -> float:
    """Return the seconds of a duration such as ``30s``, ``500ms``, ``1m`` or ``2`` (seconds), at most MAX_WAIT.

    Raises ValueError saying what is accepted.
    """
    m = _DURATION.match(text.strip())
    if not m:
        raise ValueError(f"wait must be a duration such as 30s, 500ms or 1m, got {text!r}")
    return min(float(m.group(1)) * _UNIT[m.group(2)], MAX_WAIT)


def parse_index(text: str) -> int:
    """Return the index a watcher names (a non-negative integer), or raise ValueError."""
    if not text.isdigit() or len(text) > 19:
        raise ValueError(f"index must be a non-negative integer (an X-Registry-Index value), got {text!r}")
    return int(text)


class Watches:
    """At most ``limit`` held requests at once, shared by every thread of one app."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._lock = threading.Lock()
        self.held = 0

    @classmethod
    def for_threads(cls, threads: int) -> Watches:
        """Return the bound for a server of ``threads`` worker threads: half of them."""
        return cls(threads // 2)

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Take one watch slot for the block; yields False (taking nothing) when all are held."""
        with self._lock:
            free = self.held < self.limit
            if free:
                self.held += 1
        try:
            yield free
        finally:
            if free:
                with self._lock:
                    self.held -= 1


def snapshot_for(args: Mapping[str, str], store: Store, watches: Watches) -> Snapshot:
    """Return the snapshot a listing request answers from, holding it as ``index`` and ``wait`` ask.

    Aborts with 400 on a bad index or wait and with 429 when every watch slot is held.
    """
    raw_index, raw_wait = args.get("index"), args.get("wait")
    try:
        index = None if raw_index is None else parse_index(raw_index)
        wait = DEFAULT_WAIT if raw_wait is None else parse_wait(raw_wait)
    except ValueError as exc:
        abort(400, str(exc))
    snap = store.snapshot()
    if index is None or snap.generation != index or wait <= 0:
        return snap
    with watches.slot() as free:
        if not free:
            body = jsonify(error="too_many_watches", limit=watches.limit,
                           message=f"this node holds {watches.limit} watches already; retry in {RETRY_AFTER} s")
            abort(make_response(body, 429, {"Retry-After": str(RETRY_AFTER), INDEX_HEADER: str(snap.generation)}))
        return store.next_snapshot(index, wait)
