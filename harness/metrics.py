"""Read a node's ``/metrics`` page: Prometheus text parsed by ``prometheus_client.parser``."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def parse(text: str) -> dict[str, float]:
    """Return sample name -> value (``sd_gossip_rounds_total`` -> 12.0), labelled samples summed.

    Invalid text raises ``ValueError`` (the parser's own error).
    """
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


def delta(before: Mapping[str, float], after: Mapping[str, float], name: str) -> float:
    """``after[name] - before[name]``; a name missing on either side counts as 0."""
    return after.get(name, 0.0) - before.get(name, 0.0)
