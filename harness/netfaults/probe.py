"""Command lines for ``sd-probe`` (docker/probe.py, in the node image) and parsing of its JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..errors import FaultNotApplied

PROBE = "sd-probe"


def connect(ips: Sequence[str], timeout: float = 1.0) -> list[str]:
    """argv: try a TCP connect to every IP at once; prints ``{"<ip>": bool}``."""
    return [PROBE, "connect", "--timeout", f"{timeout:g}", *ips]


def loss(ip: str, attempts: int) -> list[str]:
    """argv: connect up to ``attempts`` times, stop at the first failure; prints attempts and failures."""
    return [PROBE, "loss", "--attempts", str(int(attempts)), ip]


def connect_time(ip: str) -> list[str]:
    """argv: time one connect; prints ``{"seconds": float | null}``."""
    return [PROBE, "connect-time", ip]


def stopped(pid: int = 1) -> list[str]:
    """argv: whether process ``pid`` is stopped by a signal; prints pid, state, stopped."""
    return [PROBE, "stopped", str(pid)]


def parse(rc: int, out: str, what: str) -> dict[str, Any]:
    """The JSON object a probe printed last; FaultNotApplied when it failed or printed none."""
    lines = out.strip().splitlines()
    if rc != 0 or not lines:
        raise FaultNotApplied(f"{what}: probe failed to run (rc {rc}): {out.strip()[:300]}", out)
    try:
        result = json.loads(lines[-1])
    except ValueError:
        raise FaultNotApplied(f"{what}: probe printed no JSON: {lines[-1][:200]}", out) from None
    if not isinstance(result, dict):
        raise FaultNotApplied(f"{what}: probe printed {lines[-1][:200]}, not an object", out)
    return result
