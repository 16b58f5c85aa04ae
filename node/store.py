"""Entry storage: SQLite (durable, WAL) or memory, both behind one Store interface.

Writes are serialized by one lock per store and applied to SQLite in a single
``BEGIN IMMEDIATE`` transaction before the in-memory snapshot is swapped, so a write is
either fully stored (and survives ``kill -9``: WAL with synchronous=NORMAL loses nothing
on a process crash) or not at all. Readers take the current immutable snapshot without
locking, so requests and the gossip loop never wait on each other to read.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources

from . import protocol
from .protocol import Entry, Lease

log = logging.getLogger(__name__)


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
    """An immutable view of a store at one generation."""

    entries: dict[str, Entry]
    seen: dict[str, Seen]
    clock: int
    generation: int = 0
    # address -> (bucket key, stamp hash) of every entry, kept in step with ``entries``.
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    # bucket count -> per-bucket XOR of stamp hashes (computed on demand, then carried).
    buckets: dict[int, list[int]] = field(default_factory=dict, repr=False)
    # bucket count -> the addresses in each bucket (computed on demand, then carried).
    members: dict[int, list[tuple[str, ...]]] = field(default_factory=dict, repr=False)
    _hash: str | None = field(default=None, repr=False)
    _next_gone: float | None = field(default=None, repr=False)
    _peers: _Peers | None = field(default=None, repr=False)
    # bucket count -> the summary as hex strings, as sent (this snapshot only).
    _hex: dict[int, list[str]] = field(default_factory=dict, repr=False)
    # Guards ``buckets`` and ``members``: responders fill them while a writer copies them.
    _cache_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def view_hash(self) -> str:
        """Return the hash of the listed view, computed once per snapshot."""
        if self._hash is None:
            self._hash = protocol.view_hash(self.entries.values())
        return self._hash

    def summary(self, buckets: int) -> list[int]:
        """Return the per-bucket hashes for ``buckets`` buckets (cached)."""
        with self._cache_lock:
            cached = self.buckets.get(buckets)
            if cached is None:
                while len(self.buckets) >= 3:  # peers of other sizes ask for other counts
                    self.buckets.pop(next(iter(self.buckets)))
                cached = self.buckets[buckets] = protocol.bucket_hashes(self.keys, buckets)
            return cached

    def summary_hex(self, buckets: int) -> list[str]:
        """Return ``summary(buckets)`` as the hex strings a "sum" message carries (cached; read-only)."""
        cached = self._hex.get(buckets)
        if cached is None:
            cached = self._hex[buckets] = [format(h, "x") for h in self.summary(buckets)]
        return cached

    def cached_summary_hex(self, buckets: int) -> list[str] | None:
        """Return the hex summary if this snapshot has already formatted it, else None."""
        return self._hex.get(buckets)

    def bucket_members(self, buckets: int) -> list[tuple[str, ...]]:
        """Return the addresses in each of ``buckets`` buckets (cached; read-only)."""
        with self._cache_lock:
            cached = self.members.get(buckets)
            if cached is None:
                while len(self.members) >= 3:
                    self.members.pop(next(iter(self.members)))
                groups: list[list[str]] = [[] for _ in range(buckets)]
                for a, (key, _) in self.keys.items():
                    groups[key % buckets].append(a)
                cached = self.members[buckets] = [tuple(g) for g in groups]
            return cached

    def in_buckets(self, live: dict[str, Entry], buckets: int, wanted: set[int]) -> dict[str, Entry]:
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

    def peers(self, now: float, lease: Lease, me: str) -> list[str]:
        """Return healthy node entries other than ``me``, sorted (read-only).

        Cached until one of them expires; a write carries the cache over to the next
        snapshot (see ``_carry_peers``), so it is rebuilt about once per lease, not per write.
        """
        c = self._peers
        if c is None or not c.since <= now < c.until or c.me != me or c.lease != lease:
            peers = sorted(protocol.live_peers(self.entries.values(), now, lease, me))
            until = min((self.entries[a].renewed_at + lease.ttl for a in peers), default=float("inf"))
            c = self._peers = _Peers(now, until, me, lease, peers, frozenset(peers))
        return c.sorted

    def _carry_peers(self, upserts: list[Entry], deletes: list[str], now: float) -> _Peers | None:
        """Return this snapshot's peer cache updated for a write at ``now`` (None: rebuild).

        Entries the write leaves alone keep their state over the old cache's validity;
        a written node entry is in if it is healthy at ``now`` (see Entry.status), and
        then healthy until its own lease end, which bounds the new validity. Valid from
        ``now`` on only.
        """
        c = self._peers
        if c is None or not c.since <= now < c.until:
            return None
        until, me, ttl, known = c.until, c.me, c.lease.ttl, c.members
        peer = dict.fromkeys(deletes, False)  # address -> is a peer after the write
        for e in upserts:
            end = e.renewed_at + ttl
            healthy = now < end and not e.deleted and e.app_name == protocol.NODE_APP and e.address != me
            if healthy:
                until = min(until, end)
            peer[e.address] = healthy
        if all((a in known) == p for a, p in peer.items()):  # same peers (renewals): share the list
            return _Peers(now, until, me, c.lease, c.sorted, known)
        members = frozenset([a for a in known if a not in peer] + [a for a, p in peer.items() if p])
        return _Peers(now, until, me, c.lease, sorted(members), members)

    def live(self, now: float, lease: Lease) -> dict[str, Entry]:
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


def _regroup(
    groups: list[tuple[str, ...]], buckets: int, came: list[tuple[str, int]], went: list[tuple[str, int]]
) -> list[tuple[str, ...]]:
    """Return a copy of ``groups`` (addresses per bucket) with addresses added and removed."""
    groups = list(groups)
    for address, key in went:
        b = key % buckets
        groups[b] = tuple(a for a in groups[b] if a != address)
    for address, key in came:
        b = key % buckets
        groups[b] = (*groups[b], address)
    return groups


class Store:
    """Entries of one node plus its Lamport clock; this base class keeps them in memory."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._lock = threading.Lock()
        self._snap = Snapshot({}, {}, 0)
        # While not None, merges are buffered here instead of applied (see hold()).
        self._held: list[Entry] | None = None

    # -- reading ---------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Return the current snapshot (may include entries that are already gone)."""
        return self._snap

    def live(self, now: float) -> dict[str, Entry]:
        """Return every entry not yet gone at ``now``: listed ones and tombstones (read-only)."""
        return self._snap.live(now, self.lease)

    def get(self, address: str, now: float) -> Entry | None:
        """Return the live entry of ``address`` or None."""
        e = self._snap.entries.get(address)
        return e if e is not None and protocol.is_live(e, now, self.lease) else None

    # -- writing ---------------------------------------------------------------------

    def write_local(
        self, address: str, now: float, wall: int, origin: str, *, app_name: str | None = None, deleted: bool = False
    ) -> Entry:
        """Record a write accepted here (register/renew, or deregister when ``deleted``)."""
        with self._lock:
            snap = self._snap
            current = self.get(address, now)
            if deleted:
                entry = protocol.deregister(current, snap.clock, address=address, origin=origin, wall=wall, now=now)
            else:
                entry = protocol.register(
                    current, snap.clock, address=address, app_name=app_name or "", last_update=wall,
                    origin=origin, now=now,
                )
            self._install(snap, [entry], [], now, round_=-1)
            return entry

    def apply(self, incoming: Iterable[Entry], now: float, round_: int = -1) -> list[Entry]:
        """Merge entries received by gossip; return those that changed this store."""
        with self._lock:
            snap = self._snap
            fresh = [e for e in incoming if protocol.is_live(e, now, self.lease)]
            changed = list(protocol.merge(self.live(now), fresh).values())
            if self._held is not None:
                self._held.extend(changed)
            elif changed:
                self._install(snap, changed, [], now, round_)
            return changed

    def hold(self) -> None:
        """Buffer merges until release(): a synchronous-round simulation applies what a
        round learned only once every exchange of the round has seen the old state."""
        with self._lock:
            self._held = []

    def release(self, now: float, round_: int = -1) -> list[Entry]:
        """Apply the merges buffered since hold() and stop buffering; return the changes."""
        with self._lock:
            held, self._held = self._held or [], None
        return self.apply(held, now, round_)

    def sweep(self, now: float) -> list[str]:
        """Remove entries that are gone at ``now`` (expired past grace, old tombstones)."""
        with self._lock:
            snap = self._snap
            live = snap.live(now, self.lease)
            if live is snap.entries:  # nothing is gone yet (the common case, O(1))
                return []
            gone = [a for a in snap.entries if a not in live]
            if gone:
                self._install(snap, [], gone, now, -1)
            return gone

    def _install(self, snap: Snapshot, upserts: list[Entry], deletes: list[str], now: float, round_: int) -> None:
        entries = dict(snap.entries)
        seen = dict(snap.seen)
        keys = dict(snap.keys)
        # Carry the bucket arrays over, XOR-ing out old stamps and in new ones.
        with snap._cache_lock:
            buckets = {b: list(h) for b, h in snap.buckets.items()}
            members = dict(snap.members)  # lists shared until an address comes or goes
        clock = snap.clock
        seen_now = Seen(now, round_)  # immutable: one record serves every entry of this write
        rows = [(e, seen_now) for e in upserts]

        came: list[tuple[str, int]] = []  # (address, bucket key) of addresses new to the store
        went: list[tuple[str, int]] = []  # ... and of those it drops
        arrays = list(buckets.items())
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
            seen[address] = seen_now
            if e.version > clock:
                clock = e.version
        for a in deletes:
            old = keys.pop(a, None)
            if old is not None:
                went.append((a, old[0]))
                for b, arr in arrays:
                    arr[old[0] % b] ^= old[1]
            entries.pop(a, None)
            seen.pop(a, None)
        if came or went:
            members = {b: _regroup(groups, b, came, went) for b, groups in members.items()}
        self._persist(rows, deletes, clock)
        new = Snapshot(entries, seen, clock, snap.generation + 1, keys, buckets, members)
        if snap._next_gone is not None:  # still a lower bound: see Snapshot.live
            new._next_gone = min([snap._next_gone, *(protocol.gone_at(e, self.lease) for e in upserts)])
        new._peers = snap._carry_peers(upserts, deletes, now)
        self._snap = new

    def _persist(self, rows: list[tuple[Entry, Seen]], deletes: list[str], clock: int) -> None:
        """Make a write durable; the memory store has nothing to do."""

    def close(self) -> None:
        """Release resources."""


class SqliteStore(Store):
    """A Store whose every write is committed to a SQLite file before it is visible."""

    def __init__(self, path: str, lease: Lease) -> None:
        super().__init__(lease)
        self.path = path
        self._conn = self._connect()
        self._init_schema()
        self._snap = self._load()

    def _connect(self) -> sqlite3.Connection:
        # One connection used only under self._lock (writes) or at start (load).
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def _init_schema(self) -> None:
        schema = resources.files(__package__).joinpath("schema.sql").read_text()
        with self._lock:
            self._conn.executescript(schema)

    def _load(self) -> Snapshot:
        rows = self._conn.execute(
            "SELECT address, app_name, last_update, version, origin, deleted, renewed_at, seen_at, seen_round"
            " FROM entry"
        ).fetchall()
        entries = {r[0]: Entry(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in rows}
        seen = {r[0]: Seen(r[7], r[8]) for r in rows}
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
        clock = max([row[0] if row else 0, *(e.version for e in entries.values())])
        log.info("loaded %d entries from %s (clock %d)", len(entries), self.path, clock)
        keys = {a: (protocol.address_key(a), protocol.stamp_hash(e)) for a, e in entries.items()}
        return Snapshot(entries, seen, clock, 0, keys)

    def _persist(self, rows: list[tuple[Entry, Seen]], deletes: list[str], clock: int) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany(
                "INSERT INTO entry (address, app_name, last_update, version, origin, deleted, renewed_at,"
                " seen_at, seen_round) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(address) DO UPDATE SET app_name = excluded.app_name,"
                " last_update = excluded.last_update, version = excluded.version, origin = excluded.origin,"
                " deleted = excluded.deleted, renewed_at = excluded.renewed_at, seen_at = excluded.seen_at,"
                " seen_round = excluded.seen_round",
                [
                    (e.address, e.app_name, e.last_update, e.version, e.origin, int(e.deleted), e.renewed_at,
                     s.at, s.round)
                    for e, s in rows
                ],
            )
            c.executemany("DELETE FROM entry WHERE address = ?", [(a,) for a in deletes])
            c.execute(
                "INSERT INTO meta (key, value) VALUES ('clock', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (clock,),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()
