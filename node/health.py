"""What /health reports: the node's facts, and the problems that make it degraded.

A node is degraded when the store's last write failed, or when its gossip loop should
run but has completed no round for longer than ``stall_after`` (counted from the
loop's start, so a fresh node is healthy before its first round). Reading it writes
nothing: the store keeps the error of its last write.
"""

from __future__ import annotations

from .config import Config
from .gossip import Node


def stall_after(config: Config) -> float:
    """Seconds without a completed round after which a running loop counts as stalled.

    A round takes at most ``timeout`` plus a little (its exchanges' deadline), probes
    up to ``2 * timeout``; five intervals leave room for a few slow rounds.
    """
    return max(5 * config.interval, 2 * config.timeout + config.interval)


def report(node: Node) -> tuple[bool, dict]:
    """Return (healthy, body) for /health; an unhealthy body carries its ``problems``."""
    now = node.clock.now()
    last = node.last_round
    problems: list[str] = []
    if node.started_at is not None:
        if not node.looping():
            problems.append("gossip loop is not running")
        else:
            since = now - max(node.started_at, last.at if last else node.started_at)
            if since > stall_after(node.config):
                problems.append(f"no gossip round completed for {since:.1f}s")
    if node.store.write_error is not None:
        problems.append(f"store: last write failed: {node.store.write_error}")
    body: dict[str, object] = {
        "status": "degraded" if problems else "ok",
        "address": node.address,
        "entries": len(node.listing()),
        "peers": len(node.peers()),
        "last_round_age": None if last is None else round(now - last.at, 3),
        "last_round_failures": None if last is None else last.failures,
        "store_writable": node.store.write_error is None,
    }
    if problems:
        body["problems"] = problems
    return not problems, body
