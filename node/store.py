"""Entry storage: SQLite (durable, WAL) or memory, both behind one Store interface.

Writes are serialized by one lock per store and applied to SQLite in a single
``BEGIN IMMEDIATE`` transaction before the in-memory snapshot is swapped, so a write is
either fully stored (and survives ``kill -9``: WAL with synchronous=NORMAL loses nothing
on a process crash) or not at all. Readers take the current immutable snapshot without
locking, so requests and the gossip loop never wait on each other to read.

Local writes (registrations, renewals, deregistrations) are group-committed: a writer
queues its write, and whichever writer finds no batch in progress takes every queued
write and stores them in one transaction, in queue order, each versioned as if written
alone. Every writer of the batch returns only after that transaction has committed, so
an acknowledged write is as durable as before; a batch whose commit fails stores none of
its writes and each of their writers gets the error.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources

from . import protocol, validation
from .protocol import Entry, Lease
from .snapshot import Seen, Snapshot

log = logging.getLogger(__name__)

ENTRY_COLUMNS = ("address", "app_name", "last_update", "version", "origin", "deleted", "renewed_at", "seen_at",
                 "seen_round")


class StoreError(Exception):
    """A database a node cannot run on (not writable, or holding values no node writes); one line."""


@dataclass(frozen=True, slots=True)
class Written:
    """What a local write stored, and whether it created the registration."""

    entry: Entry
    # True when no live registration of the address was held before the write (none,
    # gone, or a tombstone); decided under the store's write lock, with the write.
    created: bool


@dataclass(slots=True)
class _Pending:
    """One local write waiting in a group commit, then its outcome."""

    address: str
    now: float
    wall: int
    origin: str
    app_name: str
    deleted: bool
    written: Written | None = None
    error: BaseException | None = None
    done: bool = False


class Store:
    """Entries of one node plus its Lamport clock; this base class keeps them in memory."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._lock = threading.Lock()
        self._snap = Snapshot.of({}, {}, 0)
        self.write_error: str | None = None
        """Why the last write failed to be stored, or None when it was stored (read by /health)."""
        self._changed = threading.Condition()  # notified whenever a new snapshot is installed
        # Group commit (see the module's docstring): local writes waiting for a batch, and
        # whether a writer is storing one; both guarded by ``_queued``.
        self._queued = threading.Condition()
        self._queue: list[_Pending] = []
        self._committing = False

    # -- reading ---------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Return the current snapshot (may include entries that are already gone)."""
        return self._snap

    def next_snapshot(self, generation: int, timeout: float) -> Snapshot:
        """Return the current snapshot once its generation differs from ``generation``, or after ``timeout`` s."""
        with self._changed:
            self._changed.wait_for(lambda: self._snap.generation != generation, timeout)
            return self._snap

    def live(self, now: float) -> Mapping[str, Entry]:
        """Return every entry not yet gone at ``now``: listed ones and tombstones (read-only)."""
        return self._snap.live(now, self.lease)

    def get(self, address: str, now: float) -> Entry | None:
        """Return the live entry of ``address`` or None."""
        e = self._snap.entries.get(address)
        return e if e is not None and protocol.is_live(e, now, self.lease) else None

    def changes(self, incoming: Iterable[Entry], now: float) -> list[Entry]:
        """Return the entries of ``incoming`` that ``apply`` would write at ``now``, writing nothing."""
        return list(protocol.news(self.live(now), incoming, now, self.lease).values())

    # -- writing ---------------------------------------------------------------------

    def write_local(
        self, address: str, now: float, wall: int, origin: str, *, app_name: str | None = None, deleted: bool = False
    ) -> Written:
        """Record a write accepted here (register/renew, or deregister when ``deleted``); return once it is stored.

        Concurrent calls share one transaction (group commit); each is answered as if alone.
        """
        mine = _Pending(address, now, wall, origin, app_name or "", deleted)
        with self._queued:
            self._queue.append(mine)
            while self._committing and not mine.done:
                self._queued.wait()
            batch: list[_Pending] = []
            if not mine.done:  # no batch in progress: this writer stores every queued write
                batch, self._queue, self._committing = self._queue, [], True
        if batch:
            try:
                self._commit(batch)
            except BaseException as exc:  # noqa: BLE001 - a bug here must not leave writers waiting
                for p in batch:
                    if p.error is None:
                        p.written, p.error = None, exc
            finally:
                with self._queued:
                    for p in batch:
                        p.done = True
                    self._committing = False
                    self._queued.notify_all()
        if mine.error is not None:
            raise mine.error
        assert mine.written is not None
        return mine.written

    def _commit(self, batch: list[_Pending]) -> None:
        """Store the local writes of ``batch`` in one transaction, each versioned after the ones before it."""
        with self._lock:
            snap = self._snap
            clock, now = snap.clock, max(p.now for p in batch)
            batched: dict[str, Entry] = {}  # address -> the entry this batch writes for it (the last)
            for p in batch:
                current = batched[p.address] if p.address in batched else self.get(p.address, p.now)
                try:
                    if p.deleted:
                        entry = protocol.deregister(current, clock, address=p.address, origin=p.origin,
                                                    wall=p.wall, now=p.now)
                    else:
                        entry = protocol.register(current, clock, address=p.address, app_name=p.app_name,
                                                  last_update=p.wall, origin=p.origin, now=p.now)
                except Exception as exc:  # noqa: BLE001 - VersionsExhausted: this write only is refused
                    p.error = exc
                    continue
                clock = max(clock, entry.version)
                batched[p.address] = entry
                p.written = Written(entry, current is None or current.deleted)
            if batched:
                try:
                    self._install(snap, list(batched.values()), [], now, round_=-1)
                except BaseException as exc:
                    for p in batch:
                        if p.written is not None:
                            p.written, p.error = None, exc
                    raise

    def apply(self, incoming: Iterable[Entry], now: float, round_: int = -1) -> list[Entry]:
        """Merge entries received by gossip; return those that changed this store."""
        with self._lock:
            snap = self._snap
            changed = self.changes(incoming, now)
            if changed:
                self._install(snap, changed, [], now, round_)
            return changed

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
        """Make a write durable, then visible: readers see the new snapshot only once it is stored."""
        seen = Seen(now, round_)
        new = snap.updated(upserts, deletes, seen, self.lease)
        # The stored clock is max(meta row, stored versions). A write that deletes rows may
        # take the largest version with it, and one that stores no row of version ``clock``
        # leaves it unwitnessed: only these record the clock in the meta row.
        record_clock = bool(deletes) or all(e.version != new.clock for e in upserts)
        try:
            self._persist([(e, seen) for e in upserts], deletes, new.clock if record_clock else None)
        except Exception as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            raise
        self.write_error = None
        with self._changed:
            self._snap = new
            self._changed.notify_all()

    def _persist(self, rows: list[tuple[Entry, Seen]], deletes: list[str], clock: int | None) -> None:
        """Make a write durable (and ``clock``, unless None); the memory store has nothing to do."""

    def close(self) -> None:
        """Release resources."""


def bad_column(row: tuple) -> str | None:
    """Return the first column of a stored entry row (``ENTRY_COLUMNS``) of a type or range no node writes."""
    address, app_name, last_update, version, origin, deleted, renewed_at, seen_at, seen_round = row
    checks = (
        type(address) is str,
        type(app_name) is str,
        type(last_update) is int and 0 <= last_update <= protocol.MAX_INT,
        type(version) is int and 1 <= version <= protocol.MAX_INT,
        type(origin) is str,
        type(deleted) is int and deleted in (0, 1),
        _finite(renewed_at),
        _finite(seen_at),
        type(seen_round) is int,
    )
    return next((name for name, ok in zip(ENTRY_COLUMNS, checks, strict=True) if not ok), None)


def _finite(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


class SqliteStore(Store):
    """A Store whose every write is committed to a SQLite file before it is visible."""

    def __init__(self, path: str, lease: Lease) -> None:
        super().__init__(lease)
        self.path = path
        self._conn = self._connect()
        self._init_schema()
        self._check_writable()
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

    def _check_writable(self) -> None:
        """Raise StoreError now, rather than at the first write, when the database cannot be written."""
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            try:  # a real write, undone: only a write finds a read-only file or database
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('write-check', 0)")
            finally:
                c.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot write: {exc}") from None

    def _load(self) -> Snapshot:
        rows = self._conn.execute(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entry").fetchall()
        for r in rows:
            bad = bad_column(r)
            if bad is not None:
                raise StoreError(f"{self.path}: entry {r[0]!r} has a bad {bad}: {r[ENTRY_COLUMNS.index(bad)]!r}")
        entries = {r[0]: Entry(r[0], r[1], r[2], r[3], r[4], bool(r[5]), float(r[6])) for r in rows}
        # A value an older node accepted but none writes now (``validation``): peers would refuse it.
        stale = {a: why for a, e in entries.items() if (why := validation.refusal(e)) is not None}
        if stale:
            log.warning("ignoring %d stored entries whose address, origin or app_name this node no longer "
                        "accepts: %s", len(stale), ", ".join(f"{a!r} ({why})" for a, why in list(stale.items())[:5]))
            rows = [r for r in rows if r[0] not in stale]
            entries = {a: e for a, e in entries.items() if a not in stale}
        seen = {r[0]: Seen(float(r[7]), r[8]) for r in rows}
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'clock'").fetchone()
        if row is not None and not (type(row[0]) is int and 0 <= row[0] <= protocol.MAX_INT):
            raise StoreError(f"{self.path}: the Lamport clock must be an integer in 0..{protocol.MAX_INT}, "
                             f"got {row[0]!r}")
        clock = max([row[0] if row else 0, *(e.version for e in entries.values())])
        log.info("loaded %d entries from %s (clock %d)", len(entries), self.path, clock)
        return Snapshot.of(entries, seen, clock)

    def _persist(self, rows: list[tuple[Entry, Seen]], deletes: list[str], clock: int | None) -> None:
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
            if deletes:
                c.executemany("DELETE FROM entry WHERE address = ?", [(a,) for a in deletes])
            if clock is not None:
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
