"""A short seeded ``check`` on real containers: faults applied, nothing lost or resurrected, converged."""

from __future__ import annotations

import json
from pathlib import Path

from harness.check import Settings, run
from harness.check.plan import draw
from harness.topology import node_names

FAULTS = ("isolate", "halves", "kill", "pause", "skew", "one-way")


def test_a_seeded_docker_check_passes_under_faults(docker_client, node_image, run_tag, tmp_path: Path):
    settings = Settings(backend="docker", nodes=4, duration=40.0, rate=6.0, seed=3, faults=FAULTS,
                        fault_s=4.0, quiet_s=2.0, name=f"check-it-{run_tag}", image=node_image)
    results = run(settings, tmp_path)
    assert results["violations"] == [], json.dumps(results["lost_writes"] + results["resurrections"])[:2000]
    assert (results["lost"], results["resurrected"], results["converged"]) == (0, 0, True)
    assert results["acknowledged"] > 150
    assert sum(results["faults"].values()) >= 4, results["faults_failed"]
    assert results["faults_failed"] == {}
    # the same seed plans the same faults as in the simulator; only the timing is real
    assert results["schedule"] == [f.describe() for f in draw(settings, node_names(4)).faults]
    assert results["visible_median_s"] is not None and results["visible_median_s"] < 5
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert sum(json.loads(line)["kind"] == "op" for line in lines) == results["operations"]
    assert docker_client.containers.list(all=True, filters={"label": f"sd.cluster=check-it-{run_tag}"}) == []
