"""Which peers a node gossips with: members that answered it, candidates it only heard of.

Node entries spread like any other entry, so a node learns most peers by hearsay: one
gossip message may name thousands of addresses nobody ever reached. Chosen uniformly
among all of them, the real peers would almost never be picked (an eclipse). So, as
memberlist and chitchat do with the nodes they have not heard from themselves:

* A live node entry is a *member* when it is a configured seed or once this node has
  seen that peer itself: the peer answered one of its exchanges or pings, or, being a
  known node, started an exchange here.
  Every other live node entry is a *candidate*. Membership is this node's own
  knowledge, kept in memory (a restarted node starts with candidates only).
* A round draws its ``fanout`` peers as ``protocol.select_peers`` does while every peer
  is a member. Otherwise it draws how many of them would have been candidates under a
  uniform choice, and takes at most ``max(1, fanout - members)`` of those among the
  candidates, the rest among the members: candidates are probed (and either answer and
  become members, or fail, are suspected and marked down) at a bounded rate of about one
  exchange a round, and honest newcomers, few among many members, are drawn as before.
* One message adds at most ``max_new_peers`` node entries for addresses this node does not
  hold (``admit``); the others are refused, unmerged, and counted
  (``sd_gossip_entries_refused_total{reason="new_peer_limit"}``). An honest cluster
  offers them again in its next exchanges, so a joiner of a large cluster learns it over
  a few messages instead of one.

Pure: time and randomness come in as parameters; no I/O.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping, Sequence

from .protocol import NODE_APP, Entry, select_peers

NEW_PEER_LIMIT = "new_peer_limit"
"""Reason counted for node entries refused because one message brought too many new peers."""


class Members:
    """The peers this node has seen itself (thread-safe): they answered it, or it answered them."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self._trusted = frozenset(trusted)  # the configured seeds: members whenever live
        self._seen: set[str] = set(self._trusted)
        self._lock = threading.Lock()

    def vouch(self, address: str) -> None:
        """Record that ``address`` took part in an exchange with this node."""
        if address not in self._seen:
            with self._lock:
                self._seen.add(address)

    def __contains__(self, address: object) -> bool:
        return address in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def split(self, live: Sequence[str]) -> tuple[list[str], list[str]]:
        """Return (members, candidates) of the sorted peers ``live``, both sorted; forget members no longer live."""
        seen = self._seen
        members = [p for p in live if p in seen]
        if len(members) < len(seen):  # some were marked down or are gone: drop them
            with self._lock:
                self._seen.intersection_update(members)
                self._seen.update(self._trusted)
        candidates = [p for p in live if p not in seen] if len(members) < len(live) else []
        return members, candidates


def select_targets(
    rng: random.Random,
    members: Sequence[str],
    candidates: Sequence[str],
    seeds: Sequence[str],
    me: str,
    fanout: int,
) -> list[str]:
    """Choose this round's peers, mostly among ``members`` (sorted, distinct, without ``me``).

    With no candidates this is ``select_peers`` exactly. Otherwise the candidates get the
    share a uniform draw over all live peers would give them, but at most
    ``max(1, fanout - len(members))`` places. Seeds are retried as ``select_peers`` does.
    """
    if not candidates:
        return select_peers(rng, members, seeds, me, fanout, presorted=True)
    total = len(members) + len(candidates)
    drawn = sum(1 for i in rng.sample(range(total), min(fanout, total)) if i >= len(members))
    heard = min(drawn, max(1, fanout - len(members)))
    peers = rng.sample(members, min(fanout - heard, len(members))) + rng.sample(candidates, heard)
    live = set(members) | set(candidates)
    down_seeds = sorted({s for s in seeds if s != me and s not in live})
    if down_seeds and rng.random() < len(down_seeds) / (total + 1):
        peers.append(rng.choice(down_seeds))
    return peers


SETTLE_ROUNDS = 10
"""Rounds without a change to the store after which a node gossips at its rest fanout."""


class Pace:
    """How many peers a round asks: ``fanout`` while this node's store changes, ``rest`` once it is still.

    The store is still when its generation has not moved for ``settle`` rounds: no write,
    merge or sweep here. Eager push carries each write to every node at once, and every
    node it changes is busy again (full fanout) for the next ``settle`` rounds, which
    repairs a lost push with anti-entropy as before; at rest ``rest`` exchanges a round
    still find any difference the pushes missed (memberlist does the same with one probe per
    period and a push-pull every 30 s). ``rest`` 0: always ``fanout`` (used without eager push).
    """

    def __init__(self, fanout: int, rest: int = 0, settle: int = SETTLE_ROUNDS) -> None:
        self.full, self.rest, self.settle = fanout, min(rest, fanout), settle
        self._generation: int | None = None
        self._still = 0  # rounds since the generation last moved

    def next(self, generation: int) -> int:
        """Return the fanout of a round starting with the store at ``generation``."""
        if generation != self._generation:
            self._generation, self._still = generation, 0
        else:
            self._still += 1
        return self.rest if self.rest and self._still >= self.settle else self.full


def admit(entries: Iterable[Entry], held: Mapping[str, Entry], me: str, limit: int) -> tuple[list[Entry], int]:
    """Return the entries one message may merge and how many it may not.

    At most ``limit`` of them are live node entries for addresses ``held`` lacks (new
    peers); the further ones are left out. Every other entry passes.
    """
    out: list[Entry] = []
    new = refused = 0
    for e in entries:
        if e.app_name == NODE_APP and not e.deleted and e.address != me and e.address not in held:
            if new >= limit:
                refused += 1
                continue
            new += 1
        out.append(e)
    return out, refused
