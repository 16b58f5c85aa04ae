"""Both sides of one push-pull exchange as pure steps: no transport, no clock, no writes.

The initiator is a small object that turns replies into its next message; the
responder is one function of (snapshot, request, now). Entries either side should
merge are returned, not applied, so the caller (``gossip.Node``, a simulator or a
test) decides where they go. The exchange itself is described in ``protocol``.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import protocol
from .protocol import Entry, Lease
from .snapshot import Snapshot
from .wire import CONVERGED, ProtocolError, Push, PushReply, Request, Rumor, Summary, SummaryReply

SHORT_FROM = 4
"""Bucket count from which a Summary is short (``wire.Summary``): below it, the root costs more than it saves."""


class Initiator:
    """The initiator's side of one exchange, offering one snapshot.

    ``start()`` gives the Summary; ``on_summary_reply`` the Push, or None when the
    exchange is over; ``on_push_reply`` the entries to merge.
    """

    def __init__(self, me: str, snap: Snapshot, lease: Lease) -> None:
        self.me = me
        self.snap = snap
        self.lease = lease
        self.buckets = protocol.bucket_count(len(snap.entries))

    def start(self) -> Summary:
        """Return the first message: the snapshot's bucket hashes."""
        if self.buckets >= SHORT_FROM:
            short, root = self.snap.short_summary_hex(self.buckets)
            return Summary(self.me, short, root)
        return Summary(self.me, self.snap.summary_hex(self.buckets))

    def on_summary_reply(self, reply: SummaryReply, now: float) -> Push | None:
        """Return what to push and ask for, given the peer's digest of the differing buckets."""
        if not reply.buckets:
            return None
        nb = self.buckets
        if any(i >= nb for i in reply.buckets):
            raise ProtocolError(f"buckets must be indexes below {nb}")
        snap = self.snap
        mine = snap.in_buckets(snap.live(now, self.lease), nb, set(reply.buckets))
        send, want = protocol.delta(mine, reply.digest)
        if not send and not want:
            return None
        return Push(self.me, send, want)

    def on_push_reply(self, reply: PushReply) -> Sequence[Entry]:
        """Return the entries the peer sent back, for the caller to merge."""
        return reply.entries


def respond(
    snap: Snapshot, request: Request, now: float, lease: Lease
) -> tuple[SummaryReply | PushReply, list[Entry]]:
    """Answer one request from ``snap`` at ``now``; return (reply, entries to merge).

    The reply's ``applied`` counts the pushed entries that beat ``snap``; merging the
    returned entries into the store may find fewer if it moved on meanwhile. A Rumor is
    answered as a Push that wants nothing: its entries are merged by the same rules.
    """
    if type(request) is Summary:
        return answer_summary(snap, request, now, lease), []
    if type(request) is Push:
        return answer_push(snap, request, now, lease)
    if type(request) is Rumor:
        return answer_push(snap, Push(request.sender, request.entries, ()), now, lease)
    raise TypeError(f"not a request: {request!r}")


def answer_summary(snap: Snapshot, summary: Summary, now: float, lease: Lease) -> SummaryReply:
    """Return the buckets in which ``snap`` differs from ``summary`` and the digest of them."""
    nb = len(summary.buckets)
    if summary.root is not None:
        return _answer_short(snap, summary, now, lease)
    # A converged pair, in our own spelling: equal without parsing a hash.
    if summary.buckets == snap.cached_summary_hex(nb):
        return CONVERGED
    theirs = _parsed(summary.buckets)
    differing = [i for i, h in enumerate(snap.summary(nb)) if h != theirs[i]]
    return _digest_of(snap, differing, nb, now, lease)


def _answer_short(snap: Snapshot, summary: Summary, now: float, lease: Lease) -> SummaryReply:
    """Answer a short Summary: the root decides; the 32-bit bucket hashes point at what differs.

    When the roots differ but no short hash does (two states whose bucket hashes agree in
    their low 32 bits: one chance in 2**32 per differing bucket), every bucket is answered.
    """
    nb = len(summary.buckets)
    short, root = snap.short_summary_hex(nb)
    if summary.root == root:
        return CONVERGED
    try:
        if int(summary.root, 16) == int(root, 16):  # type: ignore[arg-type]  # checked by wire
            return CONVERGED  # the same hash, spelled otherwise
    except ValueError:
        raise ProtocolError("root must be a hex string") from None
    theirs = _parsed(summary.buckets)
    differing = [i for i, h in enumerate(short) if int(h, 16) != theirs[i]]
    return _digest_of(snap, differing or list(range(nb)), nb, now, lease)


def _parsed(buckets: Sequence[str]) -> list[int]:
    try:
        return [int(h, 16) for h in buckets]
    except (TypeError, ValueError):
        raise ProtocolError("buckets must be hex strings") from None


def _digest_of(snap: Snapshot, differing: list[int], nb: int, now: float, lease: Lease) -> SummaryReply:
    """Return the reply naming the ``differing`` buckets with ``snap``'s digest of them."""
    if not differing:
        return CONVERGED
    mine = snap.in_buckets(snap.live(now, lease), nb, set(differing))
    return SummaryReply(differing, {a: (e.version, e.origin) for a, e in mine.items()})


def answer_push(snap: Snapshot, push: Push, now: float, lease: Lease) -> tuple[PushReply, list[Entry]]:
    """Return the answer to ``push`` (the entries it wants) and the pushed entries that beat ``snap``."""
    news = list(protocol.news(snap.live(now, lease), push.entries, now, lease).values())
    return PushReply(len(news), wanted(snap, push.want, now, lease)), news


def wanted(snap: Snapshot, want: Sequence[str], now: float, lease: Lease) -> list[Entry]:
    """Return the live entries of ``snap`` among the addresses ``want`` names, each once.

    The reply is at most one copy of each live entry, however often a request names it:
    a request of repeated addresses must not make the reply many times its own size.
    """
    if not want:
        return []
    live = snap.live(now, lease)
    out: dict[str, Entry] = {}
    for a in want:
        e = live.get(a)
        if e is not None and a not in out:
            out[a] = e
            if len(out) == len(live):  # everything is in: the rest of the list can add nothing
                break
    return list(out.values())
