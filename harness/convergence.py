"""Pure convergence check: compare what nodes report and explain any disagreement.

Nodes are converged when every reachable node reports the same digest and the
expected addresses are present/absent in every node's listing. When they are not,
the majority view (the listing of the largest group of nodes sharing a digest; ties
go to the group holding the lowest-numbered node) is the reference and each other
node is described by the entries it lacks, has in excess, or holds in another
version. Node-local fields (``status``, ``seen_at``, ``seen_round``, ``age``) are
not compared: they may differ between converged nodes. Expectations are judged on
the public listing; differences are explained from the full internal state
(tombstones included) when it is given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .topology import sort_nodes

# Fields of an entry that are the node's own judgement, not replicated state.
# Renewal fields (version, last_update) change every few seconds with heartbeats and are not
# part of the digest either (node.protocol.view_hash).
LOCAL_FIELDS = frozenset({"status", "seen_at", "seen_round", "age", "version", "last_update"})


@dataclass
class NodeDiff:
    """How one node's listing differs from the majority view."""

    # addresses in the majority view the node does not list
    missing: list[str] = field(default_factory=list)
    # addresses the node lists that the majority view does not
    extra: list[str] = field(default_factory=list)
    # address -> (node's record, majority record) for replicated fields that differ
    different: dict[str, tuple[dict, dict]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.different)


@dataclass
class Report:
    """What one convergence check saw, and whether it passed."""

    # node -> (digest, entry count) for nodes that answered
    digests: dict[str, tuple[str, int]]
    # nodes asked that did not answer
    unreachable: list[str] = field(default_factory=list)
    # node that the majority view belongs to (None when no node answered)
    reference: str | None = None
    # node -> differences from the majority view (only nodes that differ)
    diffs: dict[str, NodeDiff] = field(default_factory=dict)
    # node -> expected-present addresses it does not list
    lacking: dict[str, list[str]] = field(default_factory=dict)
    # node -> expected-absent addresses it still lists
    unwanted: dict[str, list[str]] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """True when all answering nodes agree and the expectations hold."""
        return (
            bool(self.digests)
            and len({d for d, _ in self.digests.values()}) == 1
            and not self.lacking
            and not self.unwanted
        )

    def lagging(self) -> list[str]:
        """Return the nodes that disagree with the majority or miss an expectation."""
        names = set(self.diffs) | set(self.lacking) | set(self.unwanted)
        if self.reference is not None:
            ref = self.digests[self.reference][0]
            names |= {n for n, (d, _) in self.digests.items() if d != ref}
        return sort_nodes(names)

    def explain(self) -> str:
        """Describe, one line per fact, which node lacks or disagrees on which entries."""
        if not self.digests:
            return "no node answered" + (f" (asked: {', '.join(self.unreachable)})" if self.unreachable else "")
        lines = self._digest_lines() + self._diff_lines()
        explained = set(self.diffs) | set(self.lacking) | set(self.unwanted)
        lines += [f"{n} differs only in state not listed (e.g. tombstones)"
                  for n in self.lagging() if n not in explained]
        lines += [f"{n} lacks expected {', '.join(self.lacking[n])}" for n in sort_nodes(self.lacking)]
        lines += [f"{n} still lists {', '.join(self.unwanted[n])} (expected absent)" for n in sort_nodes(self.unwanted)]
        if self.unreachable:
            lines.append(f"unreachable: {', '.join(sort_nodes(self.unreachable))}")
        return "\n".join(lines)

    def _digest_lines(self) -> list[str]:
        """One line per distinct digest with its nodes, then which view is the majority."""
        groups: dict[str, list[str]] = {}
        for n, (d, _) in self.digests.items():
            groups.setdefault(d, []).append(n)
        lines = []
        for d, members in sorted(groups.items(), key=lambda kv: sort_nodes(kv[1])[0]):
            count = self.digests[members[0]][1]
            lines.append(f"digest {d[:12]} ({count} entries): {', '.join(sort_nodes(members))}")
        if self.reference is not None and len(groups) > 1:
            lines.append(f"majority view: that of {self.reference}")
        return lines

    def _diff_lines(self) -> list[str]:
        """What each differing node lacks, has in excess, or holds in another version."""
        lines = []
        for n in sort_nodes(self.diffs):
            diff = self.diffs[n]
            if diff.missing:
                lines.append(f"{n} lacks {', '.join(diff.missing)}")
            if diff.extra:
                lines.append(f"{n} has extra {', '.join(diff.extra)}")
            for addr, (mine, theirs) in sorted(diff.different.items()):
                lines.append(f"{n} disagrees on {addr}: {_fmt(mine)} vs majority {_fmt(theirs)}")
        return lines


def _replicated(record: Mapping) -> dict:
    """Return the fields of an entry every converged node must agree on."""
    if not isinstance(record, Mapping):
        return {"value": record}
    return {k: v for k, v in record.items() if k not in LOCAL_FIELDS}


def _fmt(record: Mapping) -> str:
    return ", ".join(f"{k}={record[k]!r}" for k in sorted(record)) or "{}"


def majority(digests: Mapping[str, tuple[str, int]]) -> str | None:
    """Return the node whose digest is shared by most nodes (ties: group of the lowest node)."""
    if not digests:
        return None
    counts = Counter(d for d, _ in digests.values())
    best = max(counts.values())
    candidates = [n for n, (d, _) in digests.items() if counts[d] == best]
    return sort_nodes(candidates)[0]


def diff_view(view: Mapping[str, Mapping], reference: Mapping[str, Mapping]) -> NodeDiff:
    """Compare one node's listing (address -> entry) to the reference listing."""
    diff = NodeDiff(
        missing=sorted(set(reference) - set(view)),
        extra=sorted(set(view) - set(reference)),
    )
    for addr in sorted(set(view) & set(reference)):
        mine, theirs = _replicated(view[addr]), _replicated(reference[addr])
        if mine != theirs:
            keys = {k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k)}
            diff.different[addr] = ({k: mine.get(k) for k in keys}, {k: theirs.get(k) for k in keys})
    return diff


def check(
    digests: Mapping[str, tuple[str, int]],
    views: Mapping[str, Mapping[str, Mapping]] | None = None,
    unreachable: Iterable[str] = (),
    expect_present: Iterable[str] = (),
    expect_absent: Iterable[str] = (),
    detail: Mapping[str, Mapping[str, Mapping]] | None = None,
) -> Report:
    """Judge one observation of the cluster and explain it.

    ``digests`` maps each answering node to (digest, entries); ``views`` maps nodes to
    their listing (address -> entry) and is needed for the present/absent
    expectations (nodes without a view are not judged on those). Disagreements are
    explained from ``detail`` (full state per node, e.g. with tombstones) when
    given, else from ``views``.
    """
    views = views or {}
    report = Report(digests=dict(digests), unreachable=sort_nodes(set(unreachable)))
    report.reference = majority(digests)
    present, absent = list(expect_present), list(expect_absent)
    for n, view in views.items():
        lacks = [a for a in present if a not in view]
        if lacks:
            report.lacking[n] = lacks
        still = [a for a in absent if a in view]
        if still:
            report.unwanted[n] = still
    source = detail if detail else views
    ref_view = source.get(report.reference) if report.reference is not None else None
    if report.reference is not None and ref_view is not None:
        ref_digest = digests[report.reference][0]
        for n, (d, _) in digests.items():
            if d != ref_digest and n in source:
                diff = diff_view(source[n], ref_view)
                if diff:
                    report.diffs[n] = diff
    return report
