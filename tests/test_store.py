"""Stores: memory and SQLite behave alike; SQLite survives reopen, threads and kill -9."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from node import protocol
from node.protocol import NODE_APP, Entry, Lease
from node.store import SqliteStore, Store

LEASE = Lease(ttl=6.0, expire_grace=6.0, tombstone_ttl=60.0)
T0 = 1_700_000_000.0
ME = "n1:5000"
ROOT = Path(__file__).resolve().parents[1]


def remote(address, version, *, origin="n9:5000", app_name="web", deleted=False, renewed_at=T0):
    return Entry(address, app_name, int(T0), version, origin, deleted, renewed_at)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = Store(LEASE) if request.param == "memory" else SqliteStore(str(tmp_path / "s.db"), LEASE)
    yield s
    s.close()


# -- the same behaviour from both stores -------------------------------------------------------


def test_register_renew_deregister(store):
    a = store.write_local("a:1", T0, int(T0), ME, app_name="web").entry
    assert (a.version, a.origin, a.deleted, a.renewed_at) == (1, ME, False, T0)

    b = store.write_local("a:1", T0 + 2, int(T0) + 2, ME, app_name="api").entry
    assert (b.version, b.app_name, b.last_update, b.renewed_at) == (2, "api", int(T0) + 2, T0 + 2)

    t = store.write_local("a:1", T0 + 3, int(T0) + 3, ME, deleted=True).entry
    assert (t.version, t.app_name, t.deleted) == (3, "api", True)
    assert store.get("a:1", T0 + 3) == t
    assert store.snapshot().clock == 3


def test_a_write_says_whether_it_created_the_registration(store):
    assert store.write_local("a:1", T0, int(T0), ME, app_name="web").created
    assert not store.write_local("a:1", T0 + 1, int(T0), ME, app_name="web").created  # a renewal
    assert not store.write_local("a:1", T0 + 2, int(T0), ME, deleted=True).created  # it was known
    assert store.write_local("a:1", T0 + 3, int(T0), ME, app_name="web").created  # after the tombstone
    assert store.write_local("b:1", T0, int(T0), ME, deleted=True).created  # nothing to delete
    gone = T0 + 3 + LEASE.ttl + LEASE.expire_grace
    assert store.write_local("a:1", gone, int(gone), ME, app_name="web").created  # its lease ran out


def test_of_concurrent_first_registrations_exactly_one_creates(store):
    start = threading.Barrier(8)
    created: list[bool] = []

    def register() -> None:
        start.wait()
        created.append(store.write_local("a:1", T0, int(T0), ME, app_name="web").created)

    threads = [threading.Thread(target=register) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(created) == [False] * 7 + [True]


def test_apply_keeps_newer_and_reports_changes(store):
    store.write_local("a:1", T0, int(T0), ME, app_name="web")  # version 1

    newer = remote("a:1", 5, app_name="api")
    assert store.apply([newer, remote("b:1", 2)], T0) == [newer, remote("b:1", 2)]
    assert store.apply([remote("a:1", 4), newer], T0) == []  # older, and already held
    assert store.get("a:1", T0) == newer
    assert store.snapshot().clock == 5
    assert store.write_local("c:1", T0, int(T0), ME, app_name="web").entry.version == 6


def test_apply_ignores_entries_already_gone(store):
    stale = remote("a:1", 9, renewed_at=T0 - LEASE.ttl - LEASE.expire_grace)
    old_tomb = remote("b:1", 9, deleted=True, renewed_at=T0 - LEASE.tombstone_ttl)

    assert store.apply([stale, old_tomb], T0) == []
    assert dict(store.snapshot().entries) == {}


def test_gone_entries_count_as_absent_whether_swept_or_not(store):
    store.apply([remote("a:1", 9, renewed_at=T0)], T0)
    later = T0 + LEASE.ttl + LEASE.expire_grace
    assert store.get("a:1", later) is None

    back = remote("a:1", 3, renewed_at=later)
    assert store.apply([back], later) == [back]
    assert store.get("a:1", later) == back


def test_sweep_removes_exactly_the_gone_entries(store):
    store.write_local("reg:1", T0, int(T0), ME, app_name="web")
    store.write_local("tomb:1", T0, int(T0), ME, deleted=True)

    assert store.sweep(T0 + LEASE.ttl + LEASE.expire_grace - 0.001) == []
    assert store.sweep(T0 + LEASE.ttl + LEASE.expire_grace) == ["reg:1"]
    assert store.sweep(T0 + LEASE.tombstone_ttl - 0.001) == []
    assert store.sweep(T0 + LEASE.tombstone_ttl) == ["tomb:1"]
    assert dict(store.snapshot().entries) == {}
    assert store.snapshot().clock == 2  # the Lamport clock outlives the entries


def test_live_includes_tombstones_and_excludes_gone(store):
    store.write_local("reg:1", T0, int(T0), ME, app_name="web")
    store.write_local("tomb:1", T0, int(T0), ME, deleted=True)

    assert set(store.live(T0)) == {"reg:1", "tomb:1"}
    assert set(store.live(T0 + LEASE.ttl + LEASE.expire_grace)) == {"tomb:1"}
    assert dict(store.live(T0 + LEASE.tombstone_ttl)) == {}


def test_snapshots_are_copy_on_write(store):
    store.write_local("a:1", T0, int(T0), ME, app_name="web")
    before = store.snapshot()
    entries_before = dict(before.entries)

    store.write_local("b:1", T0, int(T0), ME, app_name="web")
    store.sweep(T0 + LEASE.tombstone_ttl)

    assert dict(before.entries) == entries_before
    assert store.snapshot().generation > before.generation


def test_seen_records_first_store_of_each_version(store):
    store.apply([remote("a:1", 2)], T0 + 1, round_=7)
    store.apply([remote("a:1", 2)], T0 + 5, round_=9)  # same version again: not re-seen

    seen = store.snapshot().seen["a:1"]
    assert (seen.at, seen.round) == (T0 + 1, 7)


def test_both_stores_hold_the_same_after_the_same_writes(tmp_path):
    stores = [Store(LEASE), SqliteStore(str(tmp_path / "h.db"), LEASE)]
    for s in stores:
        s.write_local("a:1", T0, int(T0), ME, app_name="web")
        s.apply([remote("b:1", 5), remote("c:1", 6, deleted=True)], T0)
    assert stores[0].snapshot().entries == stores[1].snapshot().entries
    assert stores[0].snapshot().summary(4) == stores[1].snapshot().summary(4)
    stores[1].close()


# -- caches carried from one snapshot to the next ---------------------------------------------

NAMES = [f"n{i}:5000" for i in range(1, 9)] + ["a:1", "b:1", "c:1"]


def random_write(store, rng: random.Random, now: float) -> None:
    """One write of any kind: gossip (fresh, stale or gone), local register/deregister, sweep."""
    address, op = rng.choice(NAMES), rng.random()
    if op < 0.45:
        store.apply([remote(address, rng.randint(1, 60), app_name=rng.choice(["web", NODE_APP]),
                            deleted=rng.random() < 0.2, renewed_at=now - rng.random() * 14)], now)
    elif op < 0.75:
        store.write_local(address, now, int(now), ME, app_name=rng.choice(["web", NODE_APP]))
    elif op < 0.85:
        store.write_local(address, now, int(now), ME, deleted=True)
    else:
        store.sweep(now)


@pytest.mark.parametrize("seed", range(3))
def test_caches_carried_across_writes_equal_a_fresh_computation(store, seed):
    rng = random.Random(seed)
    now = T0
    for _ in range(150):
        now += rng.choice([0.0, 0.1, 0.5, 2.0, 7.0])
        old = store.snapshot()
        old.summary(4), old.summary(2), old.bucket_members(4), old.peers(now, LEASE, ME)  # to be carried
        random_write(store, rng, now)
        snap = store.snapshot()
        keys = {a: (protocol.address_key(a), protocol.stamp_hash(e)) for a, e in snap.entries.items()}
        assert dict(snap.keys) == keys
        for b in (2, 4):
            assert snap.summary(b) == protocol.bucket_hashes(keys, b)
            assert snap.summary_hex(b) == [format(h, "x") for h in protocol.bucket_hashes(keys, b)]
        assert sorted(a for group in snap.bucket_members(4) for a in group) == sorted(snap.entries)
        for t in (now, now + 0.05, now + 3.0, now + 20.0):
            assert snap.peers(t, LEASE, ME) == sorted(protocol.live_peers(snap.entries.values(), t, LEASE, ME))
            live = snap.live(t, LEASE)
            for wanted in (set(), {0}, {1, 3}, {0, 1, 2}, {0, 1, 2, 3}, {9}):
                expected = {a: e for a, e in live.items() if keys[a][0] % 4 in wanted}
                assert dict(snap.in_buckets(live, 4, wanted)) == expected


def test_peers_of_another_node_or_lease_are_not_taken_from_the_cache():
    s = Store(LEASE)
    s.write_local("n2:5000", T0, int(T0), ME, app_name=NODE_APP)
    s.write_local(ME, T0, int(T0), ME, app_name=NODE_APP)
    snap = s.snapshot()
    assert snap.peers(T0, LEASE, ME) == ["n2:5000"]
    assert snap.peers(T0, LEASE, "n2:5000") == [ME]
    assert snap.peers(T0 + 1, Lease(0.5, 1.0, 60.0), ME) == ["n2:5000"]  # node entries are not leased
    s.write_local("n2:5000", T0 + 2, int(T0), ME, deleted=True)
    assert s.snapshot().peers(T0 + 2, LEASE, ME) == []  # marked down
    assert snap.peers(T0 - 1, LEASE, ME) == ["n2:5000"]  # a reading before the cache was made


@pytest.mark.parametrize("seed", range(40))
def test_select_peers_from_sorted_peers_picks_as_from_any_order(seed):
    rng = random.Random(seed)
    me = "n1:5000"
    live = rng.sample(NAMES, rng.randint(0, len(NAMES)))
    seeds = rng.sample(NAMES, rng.randint(0, 3))
    shuffled = live + [me] if rng.random() < 0.5 else live
    rng.shuffle(shuffled)
    fanout = rng.randint(1, 4)
    expected = protocol.select_peers(random.Random(seed), shuffled, seeds, me, fanout)
    presorted = sorted(set(live) - {me})
    assert protocol.select_peers(random.Random(seed), presorted, seeds, me, fanout, presorted=True) == expected


def test_memoized_hashes_and_address_checks_give_the_computed_answers():
    e = remote("a:1", 7)
    first = protocol.stamp_hash(e)
    protocol._stamp_memo.clear()
    assert protocol.stamp_hash(e) == first == protocol.stamp_hash(remote("a:1", 7, app_name="other"))
    assert protocol.stamp_hash(remote("a:1", 8)) != first
    for _ in range(2):
        assert protocol.is_hostport("h:80") and not protocol.is_hostport("h:0") and not protocol.is_hostport("h")


# -- SQLite: durability ------------------------------------------------------------------------


def test_sqlite_survives_reopen(tmp_path):
    path = str(tmp_path / "r.db")
    s = SqliteStore(path, LEASE)
    s.write_local("a:1", T0, int(T0), ME, app_name="web")
    s.write_local("b:1", T0 + 1, int(T0) + 1, ME, deleted=True)
    s.apply([remote("c:1", 7, origin="n2:5000", app_name="db")], T0 + 2, round_=3)
    before = s.snapshot()
    s.close()

    s = SqliteStore(path, LEASE)
    after = s.snapshot()
    assert after.entries == before.entries
    assert after.seen == before.seen
    assert after.clock == 7
    assert s.write_local("d:1", T0 + 3, int(T0) + 3, ME, app_name="web").entry.version == 8
    s.close()


def test_sqlite_lamport_clock_survives_reopen_after_everything_was_swept(tmp_path):
    path = str(tmp_path / "c.db")
    s = SqliteStore(path, LEASE)
    s.apply([remote("a:1", 41)], T0)
    s.write_local("a:1", T0, int(T0), ME, deleted=True)  # version 42
    assert s.sweep(T0 + LEASE.tombstone_ttl) == ["a:1"]
    s.close()

    s = SqliteStore(path, LEASE)
    assert dict(s.snapshot().entries) == {}
    assert s.write_local("a:1", T0 + 61, int(T0) + 61, ME, app_name="web").entry.version == 43
    s.close()


def test_sqlite_failed_write_changes_nothing(tmp_path):
    s = SqliteStore(str(tmp_path / "f.db"), LEASE)
    s.write_local("a:1", T0, int(T0), ME, app_name="web")
    before = s.snapshot()

    with pytest.raises(OverflowError):  # SQLite INTEGER is 64-bit
        s.apply([remote("b:1", 2**63)], T0)

    assert s.snapshot() is before
    assert s.write_local("c:1", T0, int(T0), ME, app_name="web").entry.version == 2
    s.close()
    s = SqliteStore(str(tmp_path / "f.db"), LEASE)
    assert set(s.snapshot().entries) == {"a:1", "c:1"}
    s.close()


def concurrent_write(s: Store, k: int, i: int) -> tuple[str | None, Entry]:
    """Write number ``i`` of writer ``k``: (address it leaves as final, or None for junk; entry written)."""
    if i % 10 == 9:  # already gone when written: work for the sweeper
        return None, s.write_local(f"junk{k}-{i}:80", T0 - 100, int(T0), ME, app_name="junk").entry
    address = f"w{k}-{i % 10}:80"
    op = i % 3
    if op == 0:
        return address, s.write_local(address, T0, int(T0), ME, app_name=f"app{k}").entry
    if op == 1:
        return address, s.write_local(address, T0, int(T0), ME, deleted=True).entry
    incoming = remote(address, s.snapshot().clock + 1, origin=f"n{k}:5000")
    assert s.apply([incoming], T0) == [incoming]
    return address, incoming


def test_sqlite_concurrent_writers_and_sweeper(tmp_path):
    """8 threads x 200 writes plus a sweeper: no error, every final write stored as acknowledged."""
    path = str(tmp_path / "t.db")
    s = SqliteStore(path, LEASE)
    errors: list[BaseException] = []
    final: dict[str, Entry] = {}
    versions: list[int] = []
    final_lock = threading.Lock()
    stop = threading.Event()
    start = threading.Barrier(9)

    def writer(k: int) -> None:
        mine: dict[str, Entry] = {}
        acked: list[int] = []
        try:
            start.wait()
            for i in range(200):
                address, entry = concurrent_write(s, k, i)
                if address is not None:
                    mine[address] = entry
                acked.append(entry.version)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        with final_lock:
            final.update(mine)
            versions.extend(acked)

    def sweeper() -> None:
        try:
            start.wait()
            while not stop.is_set():
                s.sweep(T0 + 1)
                s.snapshot().summary(4)  # fills a cache while writers carry it over
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    sweep = threading.Thread(target=sweeper)
    for t in [*threads, sweep]:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    sweep.join(10)

    assert errors == []
    assert len(final) == 72 and len(versions) == 8 * 200
    s.sweep(T0 + 1)
    assert dict(s.snapshot().entries) == final
    assert s.snapshot().clock == max(versions)
    s.close()

    s = SqliteStore(path, LEASE)
    assert dict(s.snapshot().entries) == final
    s.close()


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from node.protocol import Lease
    from node.store import SqliteStore

    store = SqliteStore(sys.argv[1], Lease(6.0, 6.0, 60.0))
    for i in range(100000):
        store.write_local(f"host-{i}:80", 1.0e9, 1000000000, "n1:5000", app_name="web")
        print(f"ok {i}", flush=True)
""")


def test_sqlite_keeps_every_acknowledged_write_after_kill_9(tmp_path):
    path = str(tmp_path / "k.db")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, path],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    acknowledged = []
    try:
        for line in proc.stdout:
            acknowledged.append(int(line.split()[1]))
            if len(acknowledged) == 300:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(10)
    assert len(acknowledged) == 300, proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL

    s = SqliteStore(path, LEASE)
    entries = s.snapshot().entries
    s.close()
    missing = [i for i in acknowledged if f"host-{i}:80" not in entries]
    assert missing == []
    assert entries[f"host-{acknowledged[-1]}:80"].version == acknowledged[-1] + 1


# -- group commit ---------------------------------------------------------------------------


def test_writes_queued_behind_a_commit_share_the_next_one_and_all_fail_with_it(tmp_path, monkeypatch):
    """A batch whose commit fails stores none of its writes; each of its writers gets the error."""
    import sqlite3
    import time

    s = SqliteStore(str(tmp_path / "g.db"), LEASE)
    commits: list[list[str]] = []
    real = s._persist

    def persist(rows, deletes, clock):
        commits.append([e.address for e, _ in rows])
        if len(commits) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        real(rows, deletes, clock)

    monkeypatch.setattr(s, "_persist", persist)
    outcome: dict[str, object] = {}

    def write(address: str) -> None:
        try:
            outcome[address] = s.write_local(address, T0, int(T0), ME, app_name="web").entry.version
        except sqlite3.Error as exc:
            outcome[address] = exc

    with s._lock:  # the first writer waits here holding its batch; the next two queue behind it
        first = threading.Thread(target=write, args=("a:1",))
        first.start()
        deadline = time.monotonic() + 10
        while not s._committing and time.monotonic() < deadline:
            time.sleep(0.001)
        others = [threading.Thread(target=write, args=(a,)) for a in ("b:1", "c:1")]
        for t in others:
            t.start()
        while len(s._queue) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
    for t in [first, *others]:
        t.join(10)

    assert commits[0] == ["a:1"] and sorted(commits[1]) == ["b:1", "c:1"]
    assert outcome["a:1"] == 1
    assert all(isinstance(outcome[a], sqlite3.OperationalError) for a in ("b:1", "c:1"))
    assert set(s.snapshot().entries) == {"a:1"}
    assert s.write_local("d:1", T0, int(T0), ME, app_name="web").entry.version == 2
    s.close()
    s = SqliteStore(str(tmp_path / "g.db"), LEASE)
    assert set(s.snapshot().entries) == {"a:1", "d:1"}
    s.close()


def test_a_batch_versions_each_write_as_if_alone(store):
    """Renewals of one address in one batch each get a higher version; the last one is stored."""
    threads = [threading.Thread(target=store.write_local, args=("a:1", T0, int(T0) + i, ME),
                                kwargs={"app_name": f"app{i}"}) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    entry = store.snapshot().entries["a:1"]
    assert entry.version == 16 == store.snapshot().clock


KILL_THREADS_SCRIPT = textwrap.dedent("""
    import sys, threading
    from node.protocol import Lease
    from node.store import SqliteStore

    store = SqliteStore(sys.argv[1], Lease(6.0, 6.0, 60.0))
    out = threading.Lock()

    def writer(k):
        for i in range(100000):
            store.write_local(f"host-{k}-{i}:80", 1.0e9, 1000000000, "n1:5000", app_name="web")
            with out:
                print(f"ok {k}-{i}", flush=True)

    for k in range(8):
        threading.Thread(target=writer, args=(k,)).start()
""")


def test_concurrent_acknowledged_writes_all_survive_kill_9(tmp_path):
    """Eight writers sharing commits: every write acknowledged before kill -9 is there after reopening."""
    path = str(tmp_path / "kt.db")
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_THREADS_SCRIPT, path],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    acknowledged = []
    try:
        for line in proc.stdout:
            acknowledged.append(line.split()[1])
            if len(acknowledged) == 800:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(10)
    assert len(acknowledged) == 800, proc.stderr.read()

    s = SqliteStore(path, LEASE)
    entries = s.snapshot().entries
    s.close()
    assert [a for a in acknowledged if f"host-{a}:80" not in entries] == []
    versions = [e.version for e in entries.values()]
    assert len(set(versions)) == len(versions)  # each write its own Lamport version, batched or not
