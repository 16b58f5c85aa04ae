"""What an entry may hold: the one rule for app names and addresses, for clients and peers alike.

A client's registration (``registry``), a gossiped entry (``Screen``, run by ``gossip.Node``) and a
stored row read at start (``store``) are held to the same rule, so nothing a client is
refused can reach a node through a peer:

* address and origin: ``host:port`` in their canonical spelling (``addresses``);
* app_name: at most MAX_APP_NAME characters, not blank, no control, format, surrogate,
  private-use or unassigned characters (Unicode category C*). A tombstone of an
  address its node never held carries the empty app name, so a deleted entry may have "".

A client gets the problem as a 400; a peer's entry that breaks the rule is dropped and
counted by reason (ADDRESS, APP_NAME) while the rest of its message is merged: one bad
entry, held by a peer that accepted it under older rules, must not stop replication.
The reserved app name ``protocol.NODE_APP`` is a client rule only (``registry``): nodes
gossip their own entries under it.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from .addresses import is_hostport

log = logging.getLogger(__name__)

MAX_APP_NAME = 255
"""Longest app name accepted, in characters."""

ADDRESS = "address"
"""Reason counted for a gossiped entry whose address or origin is not canonical host:port."""
APP_NAME = "app_name"
"""Reason counted for a gossiped entry whose app name a client could not register."""
REASONS = (ADDRESS, APP_NAME)

_MEMO_LIMIT = 1 << 14
"""Size at which the memo below is emptied (bounds its memory)."""

_memo: dict[str, str | None] = {}
"""app name -> what is wrong with it, or None (gossip checks every entry; names repeat)."""


class EntryLike(Protocol):
    """The fields of an entry the rule reads (``protocol.Entry``)."""

    @property
    def address(self) -> str: ...
    @property
    def app_name(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def deleted(self) -> bool: ...


def app_name_problem(name: object) -> str | None:
    """Return what makes ``name`` an unacceptable app name, in one line, or None when it is fine."""
    if not isinstance(name, str):
        return "app_name is required and must be a non-empty string"
    if name in _memo:
        return _memo[name]
    problem = _app_name_problem(name)
    if len(_memo) >= _MEMO_LIMIT:
        _memo.clear()
    _memo[name] = problem
    return problem


def _app_name_problem(name: str) -> str | None:
    if not name.strip():
        return "app_name is required and must be a non-empty string"
    if len(name) > MAX_APP_NAME:
        return f"app_name is longer than {MAX_APP_NAME} characters"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return "app_name must not contain control characters"
    return None


def refusal(entry: EntryLike) -> str | None:
    """Return the reason (ADDRESS, APP_NAME) a node refuses ``entry`` from a peer, or None when it is acceptable."""
    if not (is_hostport(entry.address) and is_hostport(entry.origin)):
        return ADDRESS
    if entry.deleted and entry.app_name == "":
        return None
    return None if app_name_problem(entry.app_name) is None else APP_NAME


E = TypeVar("E", bound=EntryLike)


class Screen:
    """Drops the gossiped entries ``refusal`` refuses, counts them by reason, and logs them.

    A peer holding such an entry offers it every round: each address is logged as a
    warning once, then at debug level (the count goes on in ``refuse``).
    """

    TOLD_LIMIT = 1024
    """Addresses remembered as warned about; the memory is emptied when full."""

    def __init__(self, refuse: Callable[[str, int], None]) -> None:
        self.refuse = refuse  # (reason, entries) -> None: the node's counter
        self._told: set[str] = set()

    def __call__(self, entries: Iterable[E]) -> list[E]:
        """Return the acceptable ``entries``, in order."""
        entries = list(entries)
        reasons = [refusal(e) for e in entries]
        if not any(reasons):
            return entries
        for reason in REASONS:
            self.refuse(reason, reasons.count(reason))
        bad, why = next((e, r) for e, r in zip(entries, reasons, strict=True) if r)
        level = logging.DEBUG if bad.address in self._told else logging.WARNING
        if len(self._told) >= self.TOLD_LIMIT:
            self._told.clear()
        self._told.add(bad.address)
        log.log(level, "refused %d gossiped entries no client could write (e.g. %s: %r under app_name %r from %s)",
                sum(1 for r in reasons if r), why, bad.address, bad.app_name, bad.origin)
        return [e for e, r in zip(entries, reasons, strict=True) if r is None]
