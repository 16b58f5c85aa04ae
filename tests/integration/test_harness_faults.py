"""The harness facade against real containers: faults take effect, data and URLs survive."""

import pytest

from harness import Cluster, ConvergenceTimeout, FaultNotSupported, timeline

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(docker_client, node_image, run_tag, tmp_path_factory):
    path = tmp_path_factory.mktemp("harness") / "timeline.jsonl"
    with Cluster(nodes=3, name=f"it3-{run_tag}", image=node_image, client=docker_client, timeline=path) as c:
        c.wait_converged(timeout=20)
        yield c


def test_partition_blocks_then_heal_converges(cluster):
    cluster.partition([["n1"], ["n2", "n3"]])
    cluster.register("n1", "10.20.0.1:80", "web")
    with pytest.raises(ConvergenceTimeout, match="n2 lacks expected 10.20.0.1:80"):
        cluster.wait_converged(timeout=3, expect_present=["10.20.0.1:80"])
    cluster.heal()
    cluster.wait_converged(timeout=20, expect_present=["10.20.0.1:80"])


def test_one_way_cut_keeps_the_other_direction(cluster):
    cluster.partition_one_way("n2", "n3")
    assert cluster.faults.probe_links("n2", ["n3"]) == {("n2", "n3"): False}
    assert cluster.faults.probe_links("n3", ["n2"]) == {("n3", "n2"): True}
    cluster.heal()


def test_restart_keeps_url_and_data(cluster):
    url = cluster.url("n2")
    cluster.register("n2", "10.20.0.2:80", "db")
    cluster.kill("n2")
    cluster.start("n2")
    assert cluster.url("n2") == url
    assert "10.20.0.2:80" in cluster.views(["n2"])["n2"]


def test_delay_is_applied_or_reported_unsupported(cluster):
    try:
        cluster.delay("n1", 50)
    except FaultNotSupported as exc:
        assert "netem" in str(exc)
    finally:
        cluster.heal()


def test_timeline_records_faults(cluster):
    events = [e["event"] for e in timeline.read(cluster.timeline.path)]
    assert {"up", "partition", "register", "heal", "converged", "kill", "start"} <= set(events)
