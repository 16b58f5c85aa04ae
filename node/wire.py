"""Gossip messages as typed values, their JSON encoding, and the checks on decoding.

Every message is a JSON object that carries the protocol version under ``"v"``;
requests also carry their ``"type"`` and the sender (``"from"``), replies are typed by
the request they answer. A message without ``"v"`` comes from a node older than the
field and is read as version 1, so a cluster can be upgraded one node at a time.
Decoding checks the type of every field a step reads and raises ProtocolError, so a
malformed message never reaches the store; the values of an entry's address and app
name are held to the client API's rule entry by entry when merged (``validation``).
Entries travel as compact lists with an age instead of a local time (the lease rule in
``protocol``'s overview).

Message types are append-only: a new kind of message gets a new name, and a name once
used is never given another meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .protocol import MAX_BUCKETS, MAX_INT, Entry, Stamp, is_hostport

PROTOCOL_VERSION = 1
"""Version of the messages this node sends; it reads versions 1..PROTOCOL_VERSION."""

SUMMARY = "sum"
"""Request, step 1: the initiator's per-bucket hashes."""
PUSH = "ack"
"""Request, step 2: entries the responder lacks or holds older, and addresses wanted."""
RUMOR = "rumor"
"""Request outside any exchange: entries that just changed the sender's store (eager push, ``rumor``)."""
RETIRED = frozenset({"syn"})
"""Request types no longer answered and never to be reused ("syn": a full digest in one step)."""


class ProtocolError(ValueError):
    """A gossip message is malformed or of a version this node does not speak."""


@dataclass(frozen=True, slots=True)
class Summary:
    """Step 1 (initiator): per bucket, the XOR of its entries' stamp hashes, as hex strings.

    The hex spelling is kept as sent: a converged responder compares it with its own
    spelling without parsing it (read-only). Short form (``root`` set, from
    ``handshake.SHORT_FROM`` buckets): each bucket's hash cut to 32 bits, which only point
    at the buckets that differ, and the full 64-bit hash of all entries, which decides
    whether the pair has converged.
    """

    sender: str
    buckets: Sequence[str]
    root: str | None = None  # short form: 64-bit hash of all entries; buckets cut to 32 bits


@dataclass(frozen=True, slots=True)
class SummaryReply:
    """Answer to a Summary: the buckets that differ and the responder's digest of them.

    No bucket means the pair has converged and the exchange ends.
    """

    buckets: Sequence[int]
    digest: Mapping[str, Stamp]


@dataclass(frozen=True, slots=True)
class Push:
    """Step 2 (initiator): entries the responder lacks or holds older, and the addresses it wants."""

    sender: str
    entries: Sequence[Entry]
    want: Sequence[str]


@dataclass(frozen=True, slots=True)
class PushReply:
    """Answer to a Push: how many pushed entries changed the responder, and the entries wanted."""

    applied: int
    entries: Sequence[Entry]


@dataclass(frozen=True, slots=True)
class Rumor:
    """News pushed at once, outside the rounds: entries that just changed the sender's store.

    Merged as a Push's entries are; answered with a PushReply of no entries (an ack
    carrying how many of them changed the receiver).
    """

    sender: str
    entries: Sequence[Entry]


CONVERGED = SummaryReply((), {})
"""The answer of a responder whose buckets all match: the exchange ends (read-only)."""

Request = Summary | Push | Rumor
Message = Summary | SummaryReply | Push | PushReply | Rumor


# -- encoding ------------------------------------------------------------------------------------


def encode(message: Message | LivenessMessage, now: float) -> dict:
    """Return the JSON object that carries ``message``; entry ages are taken at ``now``."""
    v = PROTOCOL_VERSION
    if type(message) is Summary:
        if message.root is not None:
            return {"v": v, "type": SUMMARY, "from": message.sender, "buckets": message.buckets, "root": message.root}
        return {"v": v, "type": SUMMARY, "from": message.sender, "buckets": message.buckets}
    if type(message) is SummaryReply:
        if not message.buckets:
            return {"v": v, "buckets": []}
        digest = [[a, version, origin] for a, (version, origin) in message.digest.items()]
        return {"v": v, "buckets": message.buckets, "digest": digest}
    if type(message) is Push:
        entries = [entry_to_wire(e, now) for e in message.entries]
        return {"v": v, "type": PUSH, "from": message.sender, "entries": entries, "want": message.want}
    if type(message) is Rumor:
        entries = [entry_to_wire(e, now) for e in message.entries]
        return {"v": v, "type": RUMOR, "from": message.sender, "entries": entries}
    if type(message) is PushReply:
        reply: dict = {"v": v, "applied": message.applied}
        if message.entries:
            reply["entries"] = [entry_to_wire(e, now) for e in message.entries]
        return reply
    if isinstance(message, (Ping, Probe, Alive)):
        return encode_liveness(message)
    raise TypeError(f"not a gossip message: {message!r}")


def dumps(obj: dict) -> bytes:
    """Serialize a JSON object compactly, as it crosses the wire."""
    return json.dumps(obj, separators=(",", ":")).encode()


def entry_to_wire(entry: Entry, now: float) -> list:
    """Encode an entry as a compact list, with its age at ``now`` instead of a local time."""
    age = now - entry.renewed_at
    return [
        entry.address,
        entry.app_name,
        entry.last_update,
        entry.version,
        entry.origin,
        1 if entry.deleted else 0,
        round(age if age > 0.0 else 0.0, 3),  # = entry.age(now): max(0.0, age)
    ]


# -- decoding ------------------------------------------------------------------------------------


def decode_request(data: object, now: float) -> Request | LivenessRequest:
    """Return the request ``data`` carries (entries placed on the clock reading ``now``)."""
    data = _versioned(data)
    kind = data.get("type")
    sender = data.get("from", "")
    if type(sender) is not str:
        raise ProtocolError("from must be a string")
    if kind == SUMMARY:
        buckets = data.get("buckets")
        if not isinstance(buckets, list) or not 1 <= len(buckets) <= MAX_BUCKETS:
            raise ProtocolError(f"buckets must be a list of 1..{MAX_BUCKETS} hex hashes")
        root = data.get("root")
        if root is not None and not (type(root) is str and 0 < len(root) <= 16):
            raise ProtocolError("root must be a hex hash of at most 16 digits")
        return Summary(sender, buckets, root)
    if kind == PUSH:
        entries = decode_entries(data.get("entries"), now)
        want = data.get("want", [])
        if not isinstance(want, list) or not all(isinstance(a, str) for a in want):
            raise ProtocolError("want must be a list of addresses")
        return Push(sender, entries, want)
    if kind == RUMOR:
        return Rumor(sender, decode_entries(data.get("entries"), now))
    if kind in LIVENESS_TYPES:
        return decode_liveness_request(kind, sender, data)
    raise ProtocolError(f"unknown message type {kind!r}")


def decode_summary_reply(data: object) -> SummaryReply:
    """Return the answer to a Summary that ``data`` carries."""
    data = _versioned(data)
    buckets = data.get("buckets", [])
    if not isinstance(buckets, list) or not all(type(i) is int and i >= 0 for i in buckets):
        raise ProtocolError("buckets must be a list of bucket indexes")
    if not buckets:
        return CONVERGED
    return SummaryReply(buckets, decode_digest(data.get("digest")))


def decode_push_reply(data: object, now: float) -> PushReply:
    """Return the answer to a Push that ``data`` carries (entries placed on ``now``)."""
    data = _versioned(data)
    applied = data.get("applied", 0)
    if type(applied) is not int:
        raise ProtocolError("applied must be an integer")
    return PushReply(applied, decode_entries(data.get("entries", []), now))


def _versioned(data: object) -> dict:
    """Return ``data`` if it is a message of a version spoken here; raise ProtocolError otherwise."""
    if not isinstance(data, dict):
        raise ProtocolError("message must be a JSON object")
    v = data.get("v", 1)  # a node older than the field speaks version 1
    if type(v) is not int or not 1 <= v <= PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {v!r} not spoken here (1..{PROTOCOL_VERSION})")
    return data


def decode_digest(value: object) -> dict[str, Stamp]:
    """Return the digest ``address -> (version, origin)`` a list of triples encodes."""
    if not isinstance(value, list):
        raise ProtocolError("digest must be a list")
    out = {}
    try:
        for address, version, origin in value:
            if type(address) is not str or type(version) is not int or type(origin) is not str:
                raise ValueError
            if not 0 < version <= MAX_INT:
                raise ValueError
            out[address] = (version, origin)
    except (TypeError, ValueError):
        raise ProtocolError("digest items must be [address, version, origin]") from None
    return out


def decode_entries(value: object, now: float) -> list[Entry]:
    """Return the entries a list of wire items encodes; one bad item refuses them all."""
    if not isinstance(value, list):
        raise ProtocolError("entries must be a list")
    try:
        return [entry_from_wire(item, now) for item in value]
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None


def entry_from_wire(item: object, now: float) -> Entry:
    """Decode one entry list, placing its renewal on the clock reading ``now``; raise ValueError when malformed."""
    if not isinstance(item, (list, tuple)) or len(item) != 7:
        raise ValueError("entry must be a list of 7 fields")
    address, app_name, last_update, version, origin, deleted, age = item
    # Types only: what the values may be (canonical addresses, app names) is ``validation``'s
    # rule, applied entry by entry when merging, so one bad entry does not refuse the message.
    if not (type(address) is str and type(origin) is str and type(app_name) is str):
        raise ValueError("address, app_name and origin must be strings")
    # ``type(x) is int`` first: the common case, without the two isinstance calls.
    if not (type(version) is int or _is_int(version)) or not 1 <= version <= MAX_INT:
        raise ValueError(f"version must be an integer in 1..{MAX_INT}")
    if not (type(last_update) is int or _is_int(last_update)) or not 0 <= last_update <= MAX_INT:
        raise ValueError(f"last_update must be an integer in 0..{MAX_INT}")
    if not (type(age) is float or _is_number(age)) or not 0 <= age < 1e12 or deleted not in (0, 1):
        raise ValueError("age or deleted has the wrong type")
    return _build_entry(address, app_name, int(last_update), int(version), origin, bool(deleted), now - float(age))


_SET_ADDRESS, _SET_APP, _SET_LAST, _SET_VERSION, _SET_ORIGIN, _SET_DELETED, _SET_RENEWED = (
    getattr(Entry, name).__set__ for name in Entry.__slots__
)


def _build_entry(
    address: str, app_name: str, last_update: int, version: int, origin: str, deleted: bool, renewed_at: float
) -> Entry:
    """Return ``Entry(...)`` of these fields in half the time: a frozen dataclass's
    __init__ sets each slot through ``object.__setattr__``; this sets the slots directly."""
    e = object.__new__(Entry)
    _SET_ADDRESS(e, address)
    _SET_APP(e, app_name)
    _SET_LAST(e, last_update)
    _SET_VERSION(e, version)
    _SET_ORIGIN(e, origin)
    _SET_DELETED(e, deleted)
    _SET_RENEWED(e, renewed_at)
    return e


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- liveness messages (``liveness``: failure detection from the exchanges) ----------------------

PING = "ping"
"""Request: are you there? Answered at once with Alive(True); costs no store access."""
PROBE = "probe"
"""Request: ping ``target`` for me (SWIM's ping-req); answered with Alive after at most a timeout."""
LIVENESS_TYPES = frozenset({PING, PROBE})


@dataclass(frozen=True, slots=True)
class Ping:
    """A direct liveness check of the receiver."""

    sender: str


@dataclass(frozen=True, slots=True)
class Probe:
    """An indirect liveness check: the receiver pings ``target`` and says whether it answered."""

    sender: str
    target: str


@dataclass(frozen=True, slots=True)
class Alive:
    """Answer to a Ping (always True) or a Probe (whether the target answered the receiver's ping)."""

    alive: bool


LivenessRequest = Ping | Probe
LivenessMessage = Ping | Probe | Alive


def encode_liveness(message: LivenessMessage) -> dict:
    """Return the JSON object that carries a liveness message."""
    v = PROTOCOL_VERSION
    if type(message) is Ping:
        return {"v": v, "type": PING, "from": message.sender}
    if type(message) is Probe:
        return {"v": v, "type": PROBE, "from": message.sender, "target": message.target}
    if type(message) is Alive:
        return {"v": v, "alive": message.alive}
    raise TypeError(f"not a liveness message: {message!r}")


def decode_liveness_request(kind: str, sender: str, data: dict) -> LivenessRequest:
    """Return the Ping or Probe of a versioned message of type ``kind`` (see decode_request)."""
    if kind == PING:
        return Ping(sender)
    target = data.get("target")
    if not is_hostport(target):
        raise ProtocolError("target must be host:port")
    assert isinstance(target, str)  # for mypy: is_hostport checks it
    return Probe(sender, target)


def decode_alive(data: object) -> Alive:
    """Return the answer to a Ping or Probe that ``data`` carries."""
    alive = _versioned(data).get("alive")
    if type(alive) is not bool:
        raise ProtocolError("alive must be true or false")
    return Alive(alive)
