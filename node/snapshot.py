"""A store's state at one generation, immutable, with the indexes gossip reads it through.

Entries, first-seen records and each address's (bucket key, stamp hash) are persistent
maps (``immutables.Map``, a hash array mapped trie): the next generation shares all but
the O(log N) nodes a write touches with the previous one, so no write copies the table.
Caches derived on demand: per-bucket hashes and members for a few bucket counts, the
live peers, and the earliest instant an entry goes. ``updated`` derives the next
snapshot from a write and carries these indexes over incrementally instead of
recomputing them: a write costs O(changed entries) plus one copy of each cached bucket
array (B <= 1024 small ints), never O(N). Other views (``derived``, e.g. the client
listing) are built at most once per snapshot and validity window.
"""

from __future__ import annotations

import bisect
import functools
import operator
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from immutables import Map

from . import protocol
from .protocol import Entry, Lease

_CACHED_COUNTS = 3
"""Bucket counts cached per snapshot (peers of other sizes ask for other counts)."""
SHORT_MASK = 0xFFFFFFFF
"""A short Summary carries each bucket's hash cut to these 32 bits, beside the full 64-bit root."""

T = TypeVar("T")


@dataclass(frozen=True)
class Seen:
    """When this node first stored the current version of an entry (its own clocks)."""

    at: float
    round: int


@dataclass(frozen=True)
class _Peers:
    """The live peers of a snapshot as ``me`` sees them, valid for readings in [since, until)."""

    since: float
    until: float
    me: str
    lease: Lease
    sorted: list[str]  # read-only
    members: frozenset[str]


@dataclass
class Snapshot:
    """An immutable view of a store at one generation; its caches fill in as it is read."""

    entries: Map[str, Entry]
    seen: Map[str, Seen]
    clock: int
    generation: int = 0
    # address -> (bucket key, stamp hash) of every entry, kept in step with ``entries``.
    keys: Map[str, tuple[int, int]] = field(default_factory=Map)
    # bucket count -> per-bucket XOR of stamp hashes (computed on demand, then carried).
    _buckets: dict[int, list[int]] = field(default_factory=dict, repr=False)
    # bucket count -> the addresses in each bucket, sorted (computed on demand, then carried).
    _members: dict[int, list[tuple[str, ...]]] = field(default_factory=dict, repr=False)
    # A lower bound of the first instant an entry goes (None: unknown); see ``live``.
    _next_gone: float | None = field(default=None, repr=False)
    _peers: _Peers | None = field(default=None, repr=False)
    # bucket count -> the summary as hex strings, as sent (this snapshot only).
    _hex: dict[int, list[str]] = field(default_factory=dict, repr=False)
    # bucket count -> the short summary and the root as hex strings (this snapshot only).
    _short: dict[int, tuple[list[str], str]] = field(default_factory=dict, repr=False)
    # name -> (since, until, value) of views built by ``derived`` (this snapshot only).
    _views: dict[str, tuple[float, float, Any]] = field(default_factory=dict, repr=False)
    # Guards ``_buckets`` and ``_members``: responders fill them while a writer copies them.
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def of(cls, entries: Mapping[str, Entry], seen: Mapping[str, Seen], clock: int) -> Snapshot:
        """Return a first snapshot of these entries (generation 0), their keys computed."""
        keys = Map({a: (protocol.address_key(a), protocol.stamp_hash(e)) for a, e in entries.items()})
        return cls(Map(entries), Map(seen), clock, 0, keys)

    def derived(self, name: str, now: float, build: Callable[[], tuple[T, float, float]]) -> T:
        """Return the view ``name`` of this snapshot at ``now``, built at most once per validity window.

        ``build()`` returns ``(value, since, until)``: the value holds for every reading in
        ``[since, until)`` (it must contain ``now``). A reading outside the window rebuilds.
        Concurrent first readers may each build; they build the same value.
        """
        cached = self._views.get(name)
        if cached is not None and cached[0] <= now < cached[1]:
            return cast(T, cached[2])
        value, since, until = build()
        self._views[name] = (since, until, value)
        return value

    # -- bucket summaries ------------------------------------------------------------------

    def summary(self, buckets: int) -> list[int]:
        """Return the per-bucket hashes for ``buckets`` buckets (cached; read-only)."""
        with self._cache_lock:
            cached = self._buckets.get(buckets)
            if cached is None:
                while len(self._buckets) >= _CACHED_COUNTS:
                    self._buckets.pop(next(iter(self._buckets)))
                cached = self._buckets[buckets] = protocol.bucket_hashes(self.keys, buckets)
            return cached

    def summary_hex(self, buckets: int) -> list[str]:
        """Return ``summary(buckets)`` as the hex strings a Summary carries (cached; read-only)."""
        cached = self._hex.get(buckets)
        if cached is None:
            cached = self._hex[buckets] = [format(h, "x") for h in self.summary(buckets)]
        return cached

    def short_summary_hex(self, buckets: int) -> tuple[list[str], str]:
        """Return ``summary(buckets)`` cut to 32 bits per bucket, and the 64-bit root (the XOR of
        every entry's stamp hash), as the hex strings a short Summary carries (cached; read-only)."""
        cached = self._short.get(buckets)
        if cached is None:
            full = self.summary(buckets)
            cached = self._short[buckets] = ([format(h & SHORT_MASK, "x") for h in full],
                                             format(functools.reduce(operator.xor, full, 0), "x"))
        return cached

    def cached_summary_hex(self, buckets: int) -> list[str] | None:
        """Return the hex summary if this snapshot has already formatted it, else None."""
        return self._hex.get(buckets)

    def bucket_members(self, buckets: int) -> list[tuple[str, ...]]:
        """Return the addresses in each of ``buckets`` buckets (cached; read-only)."""
        with self._cache_lock:
            cached = self._members.get(buckets)
            if cached is None:
                while len(self._members) >= _CACHED_COUNTS:
                    self._members.pop(next(iter(self._members)))
                groups: list[list[str]] = [[] for _ in range(buckets)]
                for a, (key, _) in self.keys.items():
                    groups[key % buckets].append(a)
                cached = self._members[buckets] = [tuple(sorted(g)) for g in groups]
            return cached

    def in_buckets(self, live: Mapping[str, Entry], buckets: int, wanted: set[int]) -> Mapping[str, Entry]:
        """Return the entries of ``live`` whose address falls in one of ``wanted`` (read-only)."""
        if len(wanted) >= buckets and wanted.issuperset(range(buckets)):  # every bucket
            return live
        members = self.bucket_members(buckets)
        if 2 * len(wanted) > buckets:  # most buckets: copy all, drop the others
            out = dict(live)
            for b in range(buckets):
                if b not in wanted:
                    for a in members[b]:
                        out.pop(a, None)
            return out
        out = {}
        for b in wanted:
            if 0 <= b < buckets:
                for a in members[b]:
                    e = live.get(a)
                    if e is not None:
                        out[a] = e
        return out

    # -- liveness and peers ----------------------------------------------------------------

    def peers(self, now: float, lease: Lease, me: str) -> list[str]:
        """Return healthy node entries other than ``me``, sorted (read-only).

        Cached until one of them expires; a write carries the cache over to the next
        snapshot (see ``_carry_peers``), so it is rebuilt about once per lease, not per write.
        """
        c = self._peers
        if c is None or not c.since <= now < c.until or c.me != me or c.lease != lease:
            peers = sorted(protocol.live_peers(self.entries.values(), now, lease, me))
            until = min((protocol.healthy_until(self.entries[a], lease) for a in peers), default=float("inf"))
            c = self._peers = _Peers(now, until, me, lease, peers, frozenset(peers))
        return c.sorted

    def live(self, now: float, lease: Lease) -> Mapping[str, Entry]:
        """Return the entries not gone at ``now`` (read-only: often ``self.entries`` itself).

        Until the earliest instant at which any entry goes, that is every entry, so the
        common case costs nothing. Writes keep ``_next_gone`` a lower bound of that instant
        (a renewal can only move an entry's end later); once ``now`` passes it, one scan
        finds the live entries and the exact next instant.
        """
        if self._next_gone is None or now >= self._next_gone:
            live, nxt = {}, float("inf")
            for a, e in self.entries.items():
                end = protocol.gone_at(e, lease)
                if now < end:
                    live[a] = e
                    nxt = min(nxt, end)
            if len(live) < len(self.entries):
                self._next_gone = now  # some are gone: scan again until a sweep removes them
                return live
            self._next_gone = nxt
        return self.entries

    # -- the next generation ---------------------------------------------------------------

    def updated(self, upserts: list[Entry], deletes: list[str], seen: Seen, lease: Lease) -> Snapshot:
        """Return the snapshot after a write that stores ``upserts`` and drops ``deletes``.

        ``seen`` records the write's instant (``seen.at``, the lease clock's ``now``) and
        round. Indexes are carried over: bucket arrays XOR the old stamps out and the new
        ones in, bucket members change only where an address comes or goes.
        """
        entries, seen_of, keys = self.entries.mutate(), self.seen.mutate(), self.keys.mutate()
        with self._cache_lock:
            buckets = {b: list(h) for b, h in self._buckets.items()}
            members = dict(self._members)  # lists shared until an address comes or goes
        arrays = list(buckets.items())
        clock = self.clock
        came: list[tuple[str, int]] = []  # (address, bucket key) of addresses new to the store
        went: list[tuple[str, int]] = []  # ... and of those it drops
        for e in upserts:
            address = e.address
            h = protocol.stamp_hash(e)
            old = keys.get(address)
            if old is None:
                k = protocol.address_key(address)
                came.append((address, k))
                change = h
            else:
                k = old[0]
                change = old[1] ^ h  # XOR the old stamp out and the new one in
            for b, arr in arrays:
                arr[k % b] ^= change
            keys[address] = (k, h)
            entries[address] = e
            seen_of[address] = seen  # immutable: one record serves every entry of this write
            if e.version > clock:
                clock = e.version
        for a in deletes:
            old = keys.pop(a, None)
            if old is not None:
                went.append((a, old[0]))
                for b, arr in arrays:
                    arr[old[0] % b] ^= old[1]
            entries.pop(a, None)
            seen_of.pop(a, None)
        if came or went:
            members = {b: _regroup(groups, b, came, went) for b, groups in members.items()}
        new = Snapshot(entries.finish(), seen_of.finish(), clock, self.generation + 1, keys.finish(), buckets, members)
        if self._next_gone is not None:  # still a lower bound: see ``live``
            new._next_gone = min([self._next_gone, *(protocol.gone_at(e, lease) for e in upserts)])
        new._peers = self._carry_peers(upserts, deletes, seen.at)
        return new

    def _carry_peers(self, upserts: Iterable[Entry], deletes: list[str], now: float) -> _Peers | None:
        """Return this snapshot's peer cache updated for a write at ``now`` (None: rebuild).

        Entries the write leaves alone keep their state over the old cache's validity;
        a written node entry is in if it is healthy at ``now`` (see Entry.status), and
        then healthy until its own lease end, which bounds the new validity. Valid from
        ``now`` on only.
        """
        c = self._peers
        if c is None or not c.since <= now < c.until:
            return None
        until, me, known = c.until, c.me, c.members
        peer = dict.fromkeys(deletes, False)  # address -> is a peer after the write
        for e in upserts:
            end = protocol.healthy_until(e, c.lease)
            healthy = now < end and e.app_name == protocol.NODE_APP and e.address != me
            if healthy:
                until = min(until, end)
            peer[e.address] = healthy
        if all((a in known) == p for a, p in peer.items()):  # same peers (renewals): share the list
            return _Peers(now, until, me, c.lease, c.sorted, known)
        members = frozenset([a for a in known if a not in peer] + [a for a, p in peer.items() if p])
        return _Peers(now, until, me, c.lease, sorted(members), members)


def _regroup(
    groups: list[tuple[str, ...]], buckets: int, came: list[tuple[str, int]], went: list[tuple[str, int]]
) -> list[tuple[str, ...]]:
    """Return a copy of ``groups`` (sorted addresses per bucket) with addresses added and removed."""
    groups = list(groups)
    for address, key in went:
        b = key % buckets
        groups[b] = tuple(a for a in groups[b] if a != address)
    for address, key in came:
        b = key % buckets
        group = list(groups[b])
        bisect.insort(group, address)
        groups[b] = tuple(group)
    return groups
