"""Append-only JSONL record of what the harness did to a cluster and when."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Directory holding per-cluster harness files when no path is given.
DEFAULT_DIR_ENV = "SD_HARNESS_DIR"


def default_path(cluster: str) -> Path:
    """Return ``$SD_HARNESS_DIR/<cluster>/timeline.jsonl`` (default directory ``.harness``)."""
    return Path(os.environ.get(DEFAULT_DIR_ENV, ".harness")) / cluster / "timeline.jsonl"


class Timeline:
    """Writes one JSON object per event: ``{"ts": unix float, "event": name, ...fields}``.

    A path of None disables recording. Writes from several threads are serialised;
    each event is one ``write`` of one line, so processes appending to the same file
    do not interleave within a line.
    """

    def __init__(self, path: str | os.PathLike | None, clock: Callable[[], float] = time.time):
        self.path = Path(path) if path is not None else None
        self._clock = clock
        self._lock = threading.Lock()

    def record(self, event: str, **fields) -> dict:
        """Append ``event`` with ``fields`` and return the record written."""
        entry = {"ts": self._clock(), "event": event, **fields}
        if self.path is None:
            return entry
        line = json.dumps(entry, default=str, sort_keys=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
        return entry


def read(path: str | os.PathLike) -> list[dict]:
    """Return every event of a timeline file, oldest first."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
