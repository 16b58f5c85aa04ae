"""The pure protocol: merge is a join, push-pull converges, leases, Lamport order, peers."""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from node import protocol
from node.clock import FakeClock
from node.protocol import DELETED, EXPIRED, GONE, HEALTHY, NODE_APP, Entry, Lease
from node.store import Store
from node.wire import entry_from_wire, entry_to_wire

LEASE = Lease(ttl=6.0, expire_grace=6.0, tombstone_ttl=60.0)
T0 = 1_700_000_000.0
EPS = 1e-3

ADDRESSES = [f"10.0.0.{i}:80" for i in range(1, 6)]
ORIGINS = ["n1:5000", "n2:5000", "n3:5000"]


def write(address: str, version: int, origin: str, now: float = T0) -> Entry:
    """Return the one write a (version, origin) stamp stands for: its content follows from it.

    An origin never reuses a version, so two copies of one stamp are copies of one write.
    """
    deleted = (version + ORIGINS.index(origin)) % 4 == 0
    app = NODE_APP if version % 3 == 0 else f"app-{version % 3}"  # node entries are not leased
    return Entry(address, app, int(T0) + version, version, origin, deleted, now)


def newer(a: Entry | None, b: Entry) -> Entry:
    """The winner of two writes of one address: the larger stamp."""
    return b if a is None or b.stamp > a.stamp else a


def digest(entries) -> dict[str, protocol.Stamp]:
    """A digest of whole state: address -> stamp of every entry."""
    return {e.address: e.stamp for e in entries}


stamps = st.tuples(st.sampled_from(ADDRESSES), st.integers(1, 12), st.sampled_from(ORIGINS))


@st.composite
def state(draw):
    """A node's state: address -> the winning write it holds."""
    out: dict[str, Entry] = {}
    for a, v, o in draw(st.lists(stamps, max_size=8)):
        out[a] = newer(out.get(a), write(a, v, o))
    return out


# -- merge is a join ---------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(state(), state())
def test_join_is_commutative(a, b):
    assert protocol.join(a, b) == protocol.join(b, a)


@settings(max_examples=150, deadline=None)
@given(state(), state(), state())
def test_join_is_associative(a, b, c):
    assert protocol.join(protocol.join(a, b), c) == protocol.join(a, protocol.join(b, c))


@settings(max_examples=100, deadline=None)
@given(state(), state())
def test_join_is_idempotent(a, b):
    assert protocol.join(a, a) == a
    ab = protocol.join(a, b)
    assert protocol.join(ab, b) == ab


@settings(max_examples=100, deadline=None)
@given(state(), state())
def test_join_keeps_the_largest_stamp_of_every_address(a, b):
    joined = protocol.join(a, b)

    assert set(joined) == set(a) | set(b)
    for address, e in joined.items():
        assert e.stamp == max(x[address].stamp for x in (a, b) if address in x)


@settings(max_examples=150, deadline=None)
@given(state(), st.lists(stamps, max_size=10))
def test_merge_of_unordered_duplicates_picks_the_newest_per_address(local, incoming):
    """merge() sees the remote writes in any order, several per address."""
    remote = [write(a, v, o) for a, v, o in incoming]
    applied = dict(local)
    applied.update(protocol.merge(local, remote))

    best: dict[str, Entry] = {}
    for e in remote:
        best[e.address] = newer(best.get(e.address), e)
    assert applied == protocol.join(local, best)


@settings(max_examples=100, deadline=None)
@given(state(), state())
def test_merge_returns_only_what_beats_local(local, remote):
    changed = protocol.merge(local, remote.values())

    for address, e in changed.items():
        assert address not in local or e.stamp > local[address].stamp
    for address, e in remote.items():
        if address not in changed:
            assert e.stamp <= local[address].stamp


@settings(max_examples=100, deadline=None)
@given(state(), state())
def test_store_apply_equals_join(a, b):
    store = Store(LEASE)
    store.apply(a.values(), T0)
    store.apply(b.values(), T0)

    assert dict(store.snapshot().entries) == protocol.join(a, b)


@settings(max_examples=200, deadline=None)
@given(state(), state())
def test_one_push_pull_exchange_makes_both_sides_equal(initiator, responder):
    # The initiator's digest against the responder's state: what each side must send.
    send, want = protocol.delta(responder, digest(initiator.values()))
    a = protocol.join(initiator, {e.address: e for e in send})
    # The initiator sends what the responder wants.
    b = protocol.join(responder, {addr: a[addr] for addr in want})

    assert a == b == protocol.join(initiator, responder)


@settings(max_examples=100, deadline=None)
@given(state())
def test_converged_pair_exchanges_digests_only(s):
    assert protocol.delta(s, digest(s.values())) == ([], [])


@settings(max_examples=100, deadline=None)
@given(state(), state())
def test_view_hash_equal_iff_listed_views_equal(a, b):
    # What clients act on: instances and their app; renewals (versions, stamps) are not hashed.
    listed = lambda s: {k: e.app_name for k, e in s.items() if not e.deleted}  # noqa: E731
    same = listed(a) == listed(b)
    assert (protocol.view_hash(a.values()) == protocol.view_hash(b.values())) == same


def test_view_hash_ignores_order_lease_clock_and_tombstones():
    x, y = write(ADDRESSES[0], 1, "n1:5000"), write(ADDRESSES[1], 2, "n1:5000")
    tomb = write(ADDRESSES[2], 4, "n1:5000")
    assert tomb.deleted

    base = protocol.view_hash([x, y])
    assert protocol.view_hash([y, x]) == base
    assert protocol.view_hash([dataclasses.replace(x, renewed_at=5.0), y]) == base
    assert protocol.view_hash([x, y, tomb]) == base
    assert protocol.view_hash([x]) != base
    renewed = dataclasses.replace(x, version=9, last_update=x.last_update + 30)
    assert protocol.view_hash([renewed, y]) == base
    assert protocol.view_hash([dataclasses.replace(x, app_name="other"), y]) != base


# -- leases --------------------------------------------------------------------------------


def entry(renewed_at=T0, deleted=False, version=1, origin="n1:5000", address="a:1", app_name="web"):
    return Entry(address, app_name, int(T0), version, origin, deleted, renewed_at)


@pytest.mark.parametrize("offset, status", [
    (0.0, HEALTHY),
    (LEASE.ttl - EPS, HEALTHY),
    (LEASE.ttl, EXPIRED),
    (LEASE.ttl + LEASE.expire_grace - EPS, EXPIRED),
    (LEASE.ttl + LEASE.expire_grace, GONE),
    (10 * LEASE.tombstone_ttl, GONE),
])
def test_registration_lease_boundaries(clock, offset, status):
    e = entry(renewed_at=clock.now())
    clock.set(T0 + offset)
    assert e.status(clock.now(), LEASE) == status
    assert protocol.is_live(e, clock.now(), LEASE) == (status != GONE)


@pytest.mark.parametrize("offset, status", [
    (0.0, DELETED),
    (LEASE.ttl + LEASE.expire_grace, DELETED),
    (LEASE.tombstone_ttl - EPS, DELETED),
    (LEASE.tombstone_ttl, GONE),
])
def test_tombstone_lease_boundaries(clock, offset, status):
    e = entry(renewed_at=clock.now(), deleted=True)
    clock.set(T0 + offset)
    assert e.status(clock.now(), LEASE) == status


@settings(max_examples=200, deadline=None)
@given(
    renewed_at=st.floats(0, 4e9, allow_nan=False),
    ttl=st.floats(0.05, 3600, allow_nan=False),
    grace=st.floats(0, 3600, allow_nan=False),
)
def test_lease_boundaries_are_exact_for_any_clock_reading(renewed_at, ttl, grace):
    """Expiry happens exactly at the instant renewed_at + ttl a FakeClock is set to."""
    lease = Lease(ttl, grace, 2 * (ttl + grace) + 1)
    e = entry(renewed_at=renewed_at)
    tomb = entry(renewed_at=renewed_at, deleted=True)

    assert e.status(renewed_at + ttl, lease) != HEALTHY
    assert e.status(renewed_at + ttl + grace, lease) == GONE
    assert tomb.status(renewed_at + lease.tombstone_ttl, lease) == GONE


@settings(max_examples=200, deadline=None)
@given(renewed_at=st.floats(0, 4e9, allow_nan=False), later=st.floats(0, 1e7, allow_nan=False))
def test_node_entries_are_healthy_until_a_tombstone_replaces_them(renewed_at, later):
    node = entry(renewed_at=renewed_at, app_name=NODE_APP)
    assert node.status(renewed_at + later, LEASE) == HEALTHY
    assert protocol.gone_at(node, LEASE) == math.inf == protocol.healthy_until(node, LEASE)
    assert protocol.live_peers([node], renewed_at + later, LEASE, "me:1") == [node.address]
    down = dataclasses.replace(node, version=2, deleted=True)  # marked down
    assert protocol.merge({node.address: node}, [down]) == {node.address: down}
    assert down.status(renewed_at + later, LEASE) == (DELETED if later < LEASE.tombstone_ttl else GONE)
    assert protocol.live_peers([down], renewed_at, LEASE, "me:1") == []
    client = entry(renewed_at=renewed_at)  # the same instant under another app keeps its lease
    assert client.status(renewed_at + LEASE.ttl + LEASE.expire_grace + later, LEASE) == GONE


def test_renewal_resets_the_lease(clock):
    store = Store(LEASE)
    store.write_local("a:1", clock.now(), int(T0), "n1:5000", app_name="web")
    clock.advance(LEASE.ttl - 1)
    renewed = store.write_local("a:1", clock.now(), int(T0), "n1:5000", app_name="web").entry

    clock.advance(LEASE.ttl - EPS)  # 2 ttl - 1 after the registration
    assert renewed.status(clock.now(), LEASE) == HEALTHY
    clock.set(renewed.renewed_at + LEASE.ttl)
    assert renewed.status(clock.now(), LEASE) == EXPIRED


def test_renewal_of_an_expired_entry_makes_it_healthy_again(clock):
    store = Store(LEASE)
    store.write_local("a:1", clock.now(), int(T0), "n1:5000", app_name="web")
    clock.advance(LEASE.ttl + 1)
    assert store.get("a:1", clock.now()).status(clock.now(), LEASE) == EXPIRED

    store.write_local("a:1", clock.now(), int(T0), "n1:5000", app_name="web")
    assert store.get("a:1", clock.now()).status(clock.now(), LEASE) == HEALTHY


def test_age_is_never_negative():
    assert entry(renewed_at=T0 + 10).age(T0) == 0.0


def test_age_survives_the_wire_so_expiry_is_the_same_instant():
    """Sender and receiver clocks disagree by days; the entry still expires when it should."""
    sender, receiver = FakeClock(start=T0), FakeClock(start=T0 + 3 * 86400 + 0.5)
    e = entry(renewed_at=sender.now() - 2.0)  # renewed 2 s before it is sent

    got = entry_from_wire(entry_to_wire(e, sender.now()), receiver.now())

    assert got.stamp == e.stamp and got.app_name == e.app_name and got.last_update == e.last_update
    assert got.renewed_at == receiver.now() - 2.0
    for seconds, status in [(LEASE.ttl - 2.0 - EPS, HEALTHY), (LEASE.ttl - 2.0, EXPIRED)]:
        assert e.status(sender.now() + seconds, LEASE) == status
        assert got.status(receiver.now() + seconds, LEASE) == status


def test_nodes_with_far_apart_clocks_expire_an_entry_at_the_same_moment(make_node):
    """Through a real exchange (JSON on the in-memory wire), not just entry_to_wire/entry_from_wire."""
    ca, cb = FakeClock(start=T0), FakeClock(start=500.0)
    a, b = make_node("n1:5001", clock=ca), make_node("n2:5002", clock=cb)
    a.register("x:1", "web")
    for c in (ca, cb):
        c.advance(2.0)
    a.exchange("n2:5002")

    for c in (ca, cb):
        c.advance(LEASE.ttl - 2.0 - EPS)
    assert a.listing()["x:1"].status(ca.now(), a.lease) == HEALTHY
    assert b.listing()["x:1"].status(cb.now(), b.lease) == HEALTHY
    ca.set(T0 + LEASE.ttl)
    cb.set(500.0 + LEASE.ttl)
    assert a.listing()["x:1"].status(ca.now(), a.lease) == EXPIRED
    assert b.listing()["x:1"].status(cb.now(), b.lease) == EXPIRED


# -- ordering: tombstones and Lamport versions -----------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(tomb_version=st.integers(1, 50), tomb_origin=st.sampled_from(ORIGINS),
       reg_version=st.integers(1, 50), reg_origin=st.sampled_from(ORIGINS))
def test_tombstone_beats_every_older_registration(tomb_version, tomb_origin, reg_version, reg_origin):
    assume((tomb_version, tomb_origin) != (reg_version, reg_origin))  # one stamp is one write
    tomb = entry(deleted=True, version=tomb_version, origin=tomb_origin)
    reg = entry(version=reg_version, origin=reg_origin)
    winner = protocol.join({"a:1": tomb}, {"a:1": reg})["a:1"]
    assert winner.deleted == ((tomb_version, tomb_origin) > (reg_version, reg_origin))


def test_registration_made_after_seeing_the_tombstone_beats_it():
    store = Store(LEASE)
    tomb = entry(deleted=True, version=40, origin="n9:5000")
    store.apply([tomb], T0)

    # "n0" sorts below "n9": only the version can make this write win.
    again = store.write_local("a:1", T0, int(T0), "n0:5000", app_name="web").entry

    assert again.version > tomb.version
    assert protocol.join({"a:1": tomb}, {"a:1": again})["a:1"] == again


def test_node_clock_counts_writes_it_has_only_seen():
    """A write to a new address, after merging a high version elsewhere, is above it."""
    store = Store(LEASE)
    store.apply([entry(address="b:1", version=99, origin="n9:5000")], T0)
    assert store.write_local("a:1", T0, int(T0), "n1:5000", app_name="web").entry.version == 100


def test_skewed_wall_clock_cannot_overwrite_a_later_write(make_node):
    """n1's wall clock is 600 s ahead; n2 renews after seeing n1's write and wins."""
    skewed = make_node("n1:5001", clock=FakeClock(offset=600))
    honest = make_node("n2:5002")
    first = skewed.register("x:1", "old").entry
    skewed.exchange("n2:5002")

    later = honest.register("x:1", "new").entry
    assert later.last_update < first.last_update == int(T0) + 600
    skewed.exchange("n2:5002")  # the skewed node offers its old write again ...
    honest.exchange("n1:5001")  # ... and hears of the later one

    for n in (skewed, honest):
        e = n.listing()["x:1"]
        assert (e.app_name, e.stamp, e.last_update) == ("new", later.stamp, int(T0))


def test_last_update_stamps_do_not_affect_ordering(make_node):
    n1, n2 = make_node("n1:5001"), make_node("n2:5002")
    n1.register("x:1", "old", last_update=int(T0) + 60)  # far-future stamp, earlier write
    n1.exchange("n2:5002")
    n2.register("x:1", "new", last_update=0)  # ancient stamp, later write
    n2.exchange("n1:5001")

    assert n1.listing()["x:1"].app_name == n2.listing()["x:1"].app_name == "new"


def test_skewed_node_writes_after_seeing_win_too(make_node):
    """Lamport order, not wall time, decides in both directions."""
    skewed = make_node("n1:5001", clock=FakeClock(offset=-600))
    honest = make_node("n2:5002")
    honest.register("x:1", "first")
    honest.exchange("n1:5001")
    skewed.register("x:1", "second")  # its stamp is 600 s *older*, but the write is later
    skewed.exchange("n2:5002")

    assert honest.listing()["x:1"].app_name == "second"
    assert honest.listing()["x:1"].last_update == int(T0) - 600


# -- peer selection --------------------------------------------------------------------------


LIVE = [f"p{i}:5000" for i in range(5)]


@settings(max_examples=200, deadline=None)
@given(
    live=st.lists(st.sampled_from(LIVE + ["me:5000"]), max_size=8),
    seeds=st.lists(st.sampled_from(LIVE + ["me:5000", "s:5000"]), max_size=4),
    fanout=st.integers(1, 4),
    seed=st.integers(0, 2**32),
)
def test_select_peers_never_picks_self_nor_twice(live, seeds, fanout, seed):
    peers = protocol.select_peers(random.Random(seed), live, seeds, "me:5000", fanout)

    assert "me:5000" not in peers
    assert len(peers) == len(set(peers))
    assert set(peers) <= set(live) | set(seeds)
    known = set(live) - {"me:5000"}
    if not known:
        assert sorted(peers) == sorted(set(seeds) - {"me:5000"})
    else:
        assert len(set(peers) & known) == min(fanout, len(known))
        assert len(peers) <= min(fanout, len(known)) + 1


def test_select_peers_bootstrap_contacts_every_seed():
    seeds = ["s1:5000", "s2:5000", "me:5000", "s3:5000"]
    peers = protocol.select_peers(random.Random(0), [], seeds, "me:5000", fanout=1)
    assert sorted(peers) == ["s1:5000", "s2:5000", "s3:5000"]


def test_select_peers_with_no_one_known_is_empty():
    assert protocol.select_peers(random.Random(0), ["me:5000"], ["me:5000"], "me:5000", 3) == []


def test_select_peers_is_uniform_among_live():
    rng = random.Random(42)
    counts = Counter()
    rounds = 20_000
    for _ in range(rounds):
        counts.update(protocol.select_peers(rng, LIVE + ["me:5000"], LIVE[:2], "me:5000", fanout=2))

    assert set(counts) == set(LIVE)
    expected = rounds * 2 / len(LIVE)
    for peer, n in counts.items():
        assert abs(n - expected) < 0.05 * expected, (peer, n, expected)


def test_select_peers_retries_down_seeds_at_cassandra_rate():
    rng = random.Random(7)
    live, seeds = LIVE[:3], ["s1:5000", "s2:5000"]
    rounds = 20_000
    extra = sum(len(protocol.select_peers(rng, live, seeds, "me:5000", fanout=3)) - 3 for _ in range(rounds))
    assert abs(extra / rounds - 2 / 4) < 0.02


def test_select_peers_is_deterministic_with_a_seeded_rng():
    def run(seed):
        rng = random.Random(seed)
        return [protocol.select_peers(rng, LIVE, ["s:5000"], "me:5000", 2) for _ in range(50)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_live_peers_are_healthy_node_entries_other_than_me():
    now = T0
    entries = [
        entry(address="me:5000", app_name=NODE_APP, renewed_at=now),
        entry(address="p1:5000", app_name=NODE_APP, renewed_at=now),
        entry(address="p2:5000", app_name=NODE_APP, renewed_at=now - 100 * LEASE.ttl),  # not leased
        entry(address="p3:5000", app_name=NODE_APP, renewed_at=now, deleted=True),  # marked down
        entry(address="w1:80", app_name="web", renewed_at=now),
    ]
    assert protocol.live_peers(entries, now, LEASE, "me:5000") == ["p1:5000", "p2:5000"]
