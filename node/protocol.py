"""The gossip protocol, pure: entries, versions, merge, leases, digests, deltas, peer choice.

This docstring is the one overview of the algorithm; other modules refer to it.

Algorithm in brief
------------------
* Every registered instance is an :class:`Entry` keyed by its address. Each write
  (registration, renewal, deregistration) made at a node gets a version from that
  node's Lamport clock: ``max(everything the node has seen) + 1``. The pair
  ``(version, origin)`` orders writes totally; the larger one wins. A write made after
  a node has heard of another write therefore always beats it, whichever node took it,
  and no wall clock is compared across machines: a node whose clock is minutes off
  cannot overwrite newer data.
* Merging two states keeps, per address, the entry with the larger ``(version, origin)``.
  This is a join (commutative, associative, idempotent), so gossip converges whatever
  the order and duplication of messages.
* Node entries (``NODE_APP``) are not leased (``leased``): a node writes its own when it
  starts and when it finds it missing, deleted or changed, never on a timer, so a cluster
  at rest writes nothing. Liveness comes from the exchanges (``liveness``): a peer that
  fails one and that other peers cannot reach either is *marked down* by a tombstone of its
  entry; a live node that receives its own tombstone re-registers above it (a refutation).
  A node that finds itself slow (``awareness``, Lifeguard's local health: late rounds,
  unanswered probes, refutations) waits longer for its pings, marks no one down and never
  confirms a suspicion as a helper until its score is back to 0.
* Leases are measured in durations, never in another machine's timestamps. An entry
  carries its *age* on the wire (seconds since the renewal it records); the receiver
  stores ``renewed_at = now - age`` on its own clock. On every node an entry is
  ``healthy`` while ``now < renewed_at + ttl``, ``expired`` while
  ``now < renewed_at + ttl + expire_grace``, and gone from then on; all nodes agree on
  these instants up to the message delay, so expiry needs no message of its own.
* A deregistration is a tombstone: an entry with ``deleted=True`` and a new version. It
  beats every older registration and is collected ``tombstone_ttl`` after the deletion;
  since ``tombstone_ttl > ttl + expire_grace``, by then every unrenewed copy of an older
  registration has expired everywhere and cannot bring the instance back.
* One exchange is a push-pull handshake in two steps. First a summary: addresses fall
  into B buckets (B grows with the number of entries, about 8 per bucket) and the
  initiator sends, per bucket, the XOR of its entries' stamp hashes (from 4 buckets on,
  each cut to 32 bits, beside the full 64-bit XOR of all of them, the *root*, which alone
  decides whether the pair has converged). The receiver
  answers with its digest ``{address: (version, origin)}`` of the buckets that differ;
  a converged pair stops here, having sent O(B) bytes instead of O(N). Otherwise the
  initiator pushes what the receiver lacks or holds older and names what it wants,
  and the receiver answers with those entries (scuttlebutt-style deltas)::

      initiator                                responder
      Summary {buckets: xor per bucket}   ──▶  compare with its own buckets
                                          ◀──  SummaryReply {differing buckets, their digest}
      Push {entries, want}                ──▶  merge entries     (only when buckets differ)
                                          ◀──  PushReply {entries wanted}
      Rumor {entries}                     ──▶  merge, forward what changed  (at once, outside rounds)
                                          ◀──  PushReply {applied}

* News does not wait for a round (``rumor``, eager push): entries that change a node's
  store, by a local write or a merge, go at once in one ``Rumor`` datagram (at most 16
  entries) to ``fanout`` random members, never back to the peer they came from. The
  receiver merges them as a Push's and forwards only those that changed its own store,
  so each node forwards a write at most once (``N * fanout`` messages). Best effort: a
  failed rumor suspects nobody, what rumors miss the rounds repair, and at rest none go.

* Every round a node re-registers itself if needed, drops what is gone, and exchanges
  with ``fanout`` peers chosen uniformly among the live node entries it holds
  (``select_peers``), those it only heard of given a bounded share (``membership``);
  seeds are retried while unreachable or marked down, so a cluster re-forms after a
  partition (on heal, every node marked down refutes) or a full restart.
* A down, slow or cut-off peer costs the exchange at most the node's ``timeout``; the
  failure is logged and counted (``sd_gossip_exchanges_failed_total``), the peer becomes
  a suspect, and the round goes on.

Where each part lives: this module holds the data and its rules (entries, merge,
leases, buckets, peer choice); ``wire`` the messages, their versioned JSON encoding
and validation; ``handshake`` both sides of one exchange as pure steps; ``snapshot``
a store's immutable state and its indexes; ``store`` durable writes; ``gossip`` the
node that runs rounds over a ``transport``; ``rumor`` the eager push of news;
``versions`` the bounds that keep versions accepted everywhere; ``addresses`` the one
spelling of an address.

Everything here takes the time (``now``) and randomness (``rng``) as parameters and
does no I/O.
"""

from __future__ import annotations

import bisect
import hashlib
import random
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .addresses import is_hostport as is_hostport  # the rule for entry and node addresses
from .versions import MAX_INT as MAX_INT  # the bounds on versions
from .versions import next_version

NODE_APP = "service-discovery"
"""app_name under which every node registers itself; such entries are the peers (not leased)."""

HEALTHY = "healthy"
EXPIRED = "expired"
DELETED = "deleted"
GONE = "gone"


_MEMO_LIMIT = 1 << 16
"""Size at which a memo of a pure function below is emptied (bounds its memory)."""


def _remember(memo: dict, key, value) -> None:
    """Store ``key`` -> ``value`` in ``memo``, emptying it first when it is full."""
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value


Stamp = tuple[int, str]
"""Order of a write: (Lamport version, origin node address)."""


@dataclass(frozen=True)
class Lease:
    """Lease rules shared by every node of a cluster (seconds)."""

    ttl: float
    expire_grace: float
    tombstone_ttl: float


@dataclass(frozen=True, slots=True)
class Entry:
    """One instance as a node stores it.

    ``renewed_at`` is on the storing node's own lease clock; ``last_update`` is the wall
    time stamped by the node (or client) that accepted the write, for display only.
    """

    address: str
    app_name: str
    last_update: int
    version: int
    origin: str
    deleted: bool
    renewed_at: float

    @property
    def stamp(self) -> Stamp:
        """Return the total order key of the write this entry records."""
        return (self.version, self.origin)

    def age(self, now: float) -> float:
        """Return seconds since the renewal (or deletion) this entry records, never < 0."""
        return max(0.0, now - self.renewed_at)

    def status(self, now: float, lease: Lease) -> str:
        """Return healthy, expired, deleted or gone at ``now`` under ``lease``.

        Boundaries are half-open: healthy on ``[renewed_at, renewed_at + ttl)``, expired
        on ``[renewed_at + ttl, renewed_at + ttl + expire_grace)``, gone afterwards; a
        tombstone is deleted until ``renewed_at + tombstone_ttl``, then gone. Not ``leased``: healthy until deleted.
        """
        # Compare instants, not ages: ``now - renewed_at < ttl`` can round the other way.
        t = self.renewed_at
        if self.deleted:
            return DELETED if now < t + lease.tombstone_ttl else GONE
        if not leased(self) or now < t + lease.ttl:
            return HEALTHY
        if now < t + lease.ttl + lease.expire_grace:
            return EXPIRED
        return GONE


def leased(entry: Entry) -> bool:
    """Tell whether ``entry`` lives by its lease (clients) or until deleted (nodes): the one place that says so."""
    return entry.app_name != NODE_APP


def healthy_until(entry: Entry, lease: Lease) -> float:
    """Return the instant from which ``entry`` is no longer healthy (see Entry.status)."""
    return entry.renewed_at + (0.0 if entry.deleted else lease.ttl if leased(entry) else float("inf"))


def merge(local: Mapping[str, Entry], remote: Iterable[Entry]) -> dict[str, Entry]:
    """Return the entries of ``remote`` that beat ``local`` (what a merge must write)."""
    changed: dict[str, Entry] = {}
    for entry in remote:
        current = changed.get(entry.address) or local.get(entry.address)
        if current is None or _beats(entry.version, entry.origin, current.version, current.origin):
            changed[entry.address] = entry
    return changed


def _beats(version: int, origin: str, other_version: int, other_origin: str) -> bool:
    """``(version, origin) > (other_version, other_origin)`` without building the tuples."""
    return version > other_version or (version == other_version and origin > other_origin)


def join(a: Mapping[str, Entry], b: Mapping[str, Entry]) -> dict[str, Entry]:
    """Return the merge of two whole states (the lattice join used by the properties)."""
    out = dict(a)
    out.update(merge(a, b.values()))
    return out


def gone_at(entry: Entry, lease: Lease) -> float:
    """Return the instant from which ``entry`` no longer exists (see Entry.status)."""
    if entry.deleted:
        return entry.renewed_at + lease.tombstone_ttl
    return entry.renewed_at + lease.ttl + lease.expire_grace if leased(entry) else float("inf")


def status_window(entry: Entry, now: float, lease: Lease) -> tuple[float, float]:
    """Return ``[since, until)``, the instants around ``now`` over which ``entry.status`` stays as at ``now``.

    The edges are those of Entry.status; ``since`` is -inf before the first edge and
    ``until`` +inf after the last.
    """
    t = entry.renewed_at
    edges: tuple[float, ...] = ((t + lease.tombstone_ttl,) if entry.deleted else
                                (t + lease.ttl, t + lease.ttl + lease.expire_grace) if leased(entry) else ())
    since, until = float("-inf"), float("inf")
    for edge in edges:
        if edge <= now:
            since = max(since, edge)
        else:
            until = min(until, edge)
    return since, until


def is_live(entry: Entry, now: float, lease: Lease) -> bool:
    """Tell whether an entry still exists at ``now`` (listed, or remembered as tombstone)."""
    return entry.status(now, lease) != GONE


def news(local_live: Mapping[str, Entry], incoming: Iterable[Entry], now: float, lease: Lease) -> dict[str, Entry]:
    """Return the entries of ``incoming`` still live at ``now`` that beat ``local_live`` (what a merge writes)."""
    return merge(local_live, [e for e in incoming if is_live(e, now, lease)])


def delta(
    local: Mapping[str, Entry], remote_digest: Mapping[str, Stamp]
) -> tuple[list[Entry], list[str]]:
    """Compare local entries with a peer's digest.

    Return (entries the peer lacks or holds older, addresses the peer holds newer).
    """
    send = []
    theirs_of = remote_digest.get
    for a, e in local.items():
        theirs = theirs_of(a)
        if theirs is None:
            send.append(e)
        else:  # (e.version, e.origin) > theirs, inlined: this loop runs over whole states
            v = theirs[0]
            if e.version > v or (e.version == v and e.origin > theirs[1]):
                send.append(e)
    want = []
    mine_of = local.get
    for a, s in remote_digest.items():
        mine = mine_of(a)
        if mine is None:
            want.append(a)
        else:
            v = s[0]
            if v > mine.version or (v == mine.version and s[1] > mine.origin):
                want.append(a)
    return send, want


MAX_BUCKETS = 4096


def bucket_count(entries: int) -> int:
    """Return the number of summary buckets for a state of ``entries`` entries.

    A power of two near entries / 8, from 1 to 1024: a converged pair exchanges a few
    bytes per eight entries, and one changed entry costs a digest of about eight.
    """
    b = 1
    while b * 8 < entries and b < 1024:
        b *= 2
    return b


def address_key(address: str) -> int:
    """Return the stable 32-bit key that places an address in a bucket (key % B)."""
    return zlib.crc32(address.encode())


_stamp_memo: dict[tuple[str, int, str], int] = {}


def stamp_hash(entry: Entry) -> int:
    """Return a stable 64-bit hash of the write an entry records (address and stamp).

    Memoized: every node that stores a write hashes it, and a simulation runs them all
    in one process.
    """
    key = (entry.address, entry.version, entry.origin)
    h = _stamp_memo.get(key)
    if h is None:
        data = f"{entry.address}\0{entry.version}\0{entry.origin}".encode()
        h = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
        _remember(_stamp_memo, key, h)
    return h


def bucket_hashes(keys: Mapping[str, tuple[int, int]], buckets: int) -> list[int]:
    """Return per bucket the XOR of stamp hashes; ``keys`` maps address -> (key, hash)."""
    out = [0] * buckets
    for key, h in keys.values():
        out[key % buckets] ^= h
    return out


def view_hash(entries: Iterable[Entry]) -> str:
    """Return a short hash of the listed view; equal hashes on all nodes = converged.

    It covers what clients act on: which instances are registered (tombstones excluded)
    and under which app_name. Renewals are left out on purpose: every node and every
    heartbeating instance renews every few seconds, so with versions and stamps in the
    hash a cluster of 40 would never show one digest at one instant. The status is left
    out too: it is each node's own reading of the lease. ``/registry/entries`` shows
    versions for whoever needs the full state.
    """
    h = hashlib.blake2b(digest_size=8)
    for e in sorted(entries, key=lambda e: e.address):
        if e.deleted:
            continue
        h.update(f"{e.address}\0{e.app_name}\n".encode())
    return h.hexdigest()


def select_peers(
    rng: random.Random,
    live: Sequence[str],
    seeds: Sequence[str],
    me: str,
    fanout: int,
    *,
    presorted: bool = False,
) -> list[str]:
    """Choose this round's peers.

    ``fanout`` distinct peers uniformly among live known nodes. Seeds not among them are
    retried: all of them while no live node is known (bootstrap), otherwise one at random
    with probability ``unreachable_seeds / (live + 1)`` (Cassandra's rule), so a cluster
    re-forms after a partition or a full restart without biasing the uniform choice much.

    ``presorted`` promises that ``live`` is sorted, distinct and without ``me`` (as
    ``Snapshot.peers`` returns it): the same choice, without copying and sorting ``live``.
    """
    if presorted:
        live_set = live
        down_seeds = sorted({s for s in seeds if s != me and not _in_sorted(live, s)})
    else:
        live_set = sorted(set(live) - {me})
        down_seeds = sorted(set(seeds) - set(live_set) - {me})
    if not live_set:
        return down_seeds
    peers = rng.sample(live_set, min(fanout, len(live_set)))
    if down_seeds and rng.random() < len(down_seeds) / (len(live_set) + 1):
        peers.append(rng.choice(down_seeds))
    return peers


def _in_sorted(items: Sequence[str], value: str) -> bool:
    i = bisect.bisect_left(items, value)
    return i < len(items) and items[i] == value


def live_peers(entries: Iterable[Entry], now: float, lease: Lease, me: str) -> list[str]:
    """Return the addresses of node entries that are healthy at ``now`` (not marked down), except ``me``."""
    return [
        e.address
        for e in entries
        if e.app_name == NODE_APP and e.address != me and e.status(now, lease) == HEALTHY
    ]


def register(
    current: Entry | None,
    clock: int,
    *,
    address: str,
    app_name: str,
    last_update: int,
    origin: str,
    now: float,
    deleted: bool = False,
) -> Entry:
    """Return the entry a local write creates, versioned above ``current`` and ``clock``."""
    version = next_version(clock, current.version if current else 0)  # VersionsExhausted past MAX_INT
    return Entry(address, app_name, last_update, version, origin, deleted, now)


def deregister(current: Entry | None, clock: int, *, address: str, origin: str, wall: int, now: float) -> Entry:
    """Return the tombstone a local deregistration creates."""
    app = current.app_name if current else ""
    return register(
        current, clock, address=address, app_name=app, last_update=wall, origin=origin, now=now, deleted=True
    )

