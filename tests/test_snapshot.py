"""Snapshot indexes carried across writes equal the ones built from scratch; writes share, never copy, the table."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node import protocol
from node.protocol import NODE_APP, Entry, Lease
from node.snapshot import Seen, Snapshot
from node.store import SqliteStore, Store

LEASE = Lease(ttl=6.0, expire_grace=6.0, tombstone_ttl=60.0)
T0 = 1_700_000_000.0
ME = "n0:5000"
ADDRESSES = [f"n{i}:5000" for i in range(6)] + [f"10.0.0.{i}:80" for i in range(10)]
COUNTS = (1, 2, 8, 16)  # bucket counts read (and so carried); at most _CACHED_COUNTS stay cached


def fresh_indexes(snap: Snapshot, now: float) -> dict:
    """Every index of ``snap`` computed from its entries alone."""
    entries = dict(snap.entries)
    keys = {a: (protocol.address_key(a), protocol.stamp_hash(e)) for a, e in entries.items()}
    members = {}
    for b in COUNTS:
        groups: list[list[str]] = [[] for _ in range(b)]
        for a, (k, _) in keys.items():
            groups[k % b].append(a)
        members[b] = [tuple(sorted(g)) for g in groups]
    live = {a: e for a, e in entries.items() if protocol.is_live(e, now, LEASE)}
    return {
        "keys": keys,
        "summary": {b: protocol.bucket_hashes(keys, b) for b in COUNTS},
        "members": members,
        "live": live,
        "peers": sorted(protocol.live_peers(entries.values(), now, LEASE, ME)),
        "next_gone": min((protocol.gone_at(e, LEASE) for e in live.values()), default=float("inf")),
    }


def carried_indexes(snap: Snapshot, now: float) -> dict:
    """The same indexes as ``snap`` serves them (from whatever it carried)."""
    return {
        "keys": dict(snap.keys),
        "summary": {b: list(snap.summary(b)) for b in COUNTS},
        "members": {b: list(snap.bucket_members(b)) for b in COUNTS},
        "live": dict(snap.live(now, LEASE)),
        "peers": list(snap.peers(now, LEASE, ME)),
    }


def remote(address: str, version: int, origin: str, renewed_at: float, deleted: bool = False) -> Entry:
    app = NODE_APP if address.startswith("n") else "web"
    return Entry(address, app, int(T0), version, origin, deleted, renewed_at)


OPS = st.lists(
    st.tuples(
        st.sampled_from(["register", "deregister", "merge", "sweep", "advance", "read"]),
        st.sampled_from(ADDRESSES),
        st.integers(0, 40),  # version offset / seconds / bucket-count index
    ),
    min_size=1,
    max_size=60,
)


def step(s: Store, now: float, op: str, address: str, n: int) -> float:
    """Apply one random operation to ``s`` at ``now``; return the clock after it."""
    if op == "register":
        app = NODE_APP if address.startswith("n") else "web"
        s.write_local(address, now, int(now), ME, app_name=app)
    elif op == "deregister":
        s.write_local(address, now, int(now), ME, deleted=True)
    elif op == "merge":
        clock = s.snapshot().clock
        s.apply([remote(address, max(1, clock + n - 20), f"n{n % 6}:5000", now - n % 15, deleted=n % 7 == 0)], now)
    elif op == "sweep":
        s.sweep(now)
    elif op == "advance":
        now += n / 4
    else:  # fill some caches, so the next writes have them to carry
        snap = s.snapshot()
        snap.summary(COUNTS[n % len(COUNTS)])
        snap.bucket_members(COUNTS[(n + 1) % len(COUNTS)])
        snap.peers(now, LEASE, ME)
        snap.live(now, LEASE)
    return now


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_carried_indexes_equal_fresh_ones_after_random_writes(ops):
    s, now = Store(LEASE), T0
    for op, address, n in ops:
        now = step(s, now, op, address, n)
        snap = s.snapshot()
        fresh = fresh_indexes(snap, now)
        next_gone = snap._next_gone
        assert next_gone is None or next_gone <= fresh["next_gone"]  # a lower bound, never later
        carried = carried_indexes(snap, now)
        assert carried == {k: v for k, v in fresh.items() if k != "next_gone"}
        assert set(snap.seen) == set(snap.entries)
        assert snap.clock >= max((e.version for e in snap.entries.values()), default=0)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(OPS)
def test_sqlite_reopens_to_the_same_snapshot_after_random_writes(tmp_path_factory, ops):
    path = str(tmp_path_factory.mktemp("snap") / "s.db")
    s, now = SqliteStore(path, LEASE), T0
    for op, address, n in ops:
        now = step(s, now, op, address, n)
    before = s.snapshot()
    s.close()
    s = SqliteStore(path, LEASE)
    try:
        after = s.snapshot()
        assert (after.entries, after.seen, after.clock) == (before.entries, before.seen, before.clock)
        assert after.summary(8) == before.summary(8)
    finally:
        s.close()


def test_a_write_shares_the_untouched_entries_with_the_previous_snapshot():
    entries = {f"10.0.{i // 250}.{i % 250}:80": remote(f"10.0.{i // 250}.{i % 250}:80", i + 1, ME, T0)
               for i in range(2000)}
    snap = Snapshot.of(entries, dict.fromkeys(entries, Seen(T0, 0)), 2000)
    snap.summary(256)
    new = snap.updated([remote("10.9.9.9:80", 2001, ME, T0)], ["10.0.0.0:80"], Seen(T0, 1), LEASE)
    assert len(new.entries) == 2000 and "10.9.9.9:80" in new.entries and "10.0.0.0:80" not in new.entries
    assert len(snap.entries) == 2000 and "10.0.0.0:80" in snap.entries  # the old generation is untouched
    assert new.summary(256) == protocol.bucket_hashes(new.keys, 256)
    # Untouched entries are the same objects, reached through shared trie nodes.
    assert all(new.entries[a] is e for a, e in snap.entries.items() if a != "10.0.0.0:80")


def test_derived_views_are_built_once_per_window():
    snap = Snapshot.of({}, {}, 0)
    built: list[float] = []

    def build(now: float):
        built.append(now)
        return f"at {now}", now - 1, now + 1

    assert snap.derived("v", 10.0, lambda: build(10.0)) == "at 10.0"
    assert snap.derived("v", 10.9, lambda: build(10.9)) == "at 10.0"
    assert snap.derived("v", 9.0, lambda: build(9.0)) == "at 10.0"
    assert snap.derived("v", 11.0, lambda: build(11.0)) == "at 11.0"  # the window is half-open
    assert snap.derived("v", 9.5, lambda: build(9.5)) == "at 9.5"  # before the new window
    assert built == [10.0, 11.0, 9.5]
