"""The history of a check: one JSON object per line, written as things happen.

Three kinds of record, each with ``t`` (seconds since the start of the workload, on
the backend's clock: virtual in the simulator, monotonic wall time on Docker):

- ``{"kind": "op", "index", "client", "node", "op", "address", "app", "last_update",
  "invoke", "complete", "outcome", "version", "error"}``: a client operation once it
  completed (``outcome`` ok, refused or indeterminate; ``version`` from the node's answer);
- ``{"kind": "fault", "event": "start"|"end"|"skipped"|"failed", "fault", "id", ...}``:
  the nemesis;
- ``{"kind": "read", "t", "views": {node: {address: version}}}``: one poll of every
  answering node's listing, pool addresses only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

DIGITS = 4  # times are rounded to 0.1 ms, so a replayed simulation writes the same bytes


def stamp(t: float) -> float:
    """A time as it is written down."""
    return round(t, DIGITS)


class History:
    """Appends records to a list and, when given a path, to a JSON-lines file (thread-safe)."""

    def __init__(self, path: Path | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("w", encoding="utf-8") if path is not None else None

    def add(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Record one event; the line is flushed at once so a crashed run keeps it."""
        rec = dict(record)
        with self._lock:
            self.records.append(rec)
            if self._file is not None:
                self._file.write(json.dumps(rec, sort_keys=True) + "\n")
                self._file.flush()
        return rec

    def fault(self, event: str, t: float, **details: Any) -> dict[str, Any]:
        """Record a nemesis event."""
        return self.add({"kind": "fault", "event": event, "t": stamp(t), **details})

    def read(self, t: float, views: Mapping[str, Mapping[str, Mapping[str, Any]]], addresses: Iterable[str]) -> None:
        """Record one poll: which version of each pool address every answering node lists."""
        wanted = set(addresses)
        compact = {node: {a: e.get("version") for a, e in sorted(view.items()) if a in wanted}
                   for node, view in sorted(views.items())}
        self.add({"kind": "read", "t": stamp(t), "views": compact})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def load(path: Path) -> list[dict[str, Any]]:
    """Read a history file back."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def of_kind(records: Iterable[Mapping[str, Any]], kind: str) -> Iterator[Mapping[str, Any]]:
    """The records of one kind, in order."""
    return (r for r in records if r.get("kind") == kind)
