"""Five-node clusters as Docker Swarm services: the shared scenarios and the harness's faults, unchanged.

The engine is made a single-node swarm for this module when it is in none, and left
again afterwards; a swarm that was there before is used and kept.
"""

from __future__ import annotations

import docker.errors
import pytest
import requests

from harness import Cluster, FaultNotSupported, scenarios, timeline
from harness.backends.swarm import SwarmBackend

from ..test_pytest_plugin import EXAMPLE
from .params import FANOUT, INTERVAL

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.integration

# Seconds allowed for a step to converge under faults (containers share 2 cores).
WITHIN = 30.0


@pytest.fixture(scope="module")
def swarm(docker_client):
    """The engine as a swarm manager: a single-node swarm made here (and left at teardown) if it is in none."""
    made = docker_client.info()["Swarm"]["LocalNodeState"] != "active"
    if made:
        try:
            docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        except docker.errors.APIError as exc:
            pytest.fail(f"cannot make this engine a swarm: {exc}")
    try:
        yield docker_client
    finally:
        if made:
            docker_client.swarm.leave(force=True)


@pytest.fixture(scope="module")
def swarm5(swarm, node_image, run_tag, tmp_path_factory):
    """Five swarm services n1..n5 shared by the module's tests, with a timeline.

    Leases of 30 s, not the preset's 6: a restart on two busy cores can take longer than 6 s,
    and a lease that ran out would hide whether the data survived.
    """
    path = tmp_path_factory.mktemp("swarm") / "timeline.jsonl"
    with Cluster(nodes=5, name=f"sw5-{run_tag}", image=node_image, backend=SwarmBackend(swarm),
                 interval=INTERVAL, fanout=FANOUT, ttl=30, timeline=path) as c:
        c.wait_converged(timeout=WITHIN)
        yield c


@pytest.fixture
def healthy(swarm5):
    """The shared cluster, restored to all-running, healed and unskewed after the test."""
    yield swarm5
    for n in swarm5.nodes:
        state = swarm5.state(n)
        if state == "paused":
            swarm5.unpause(n)
        elif state != "running":
            swarm5.start(n)
    swarm5.heal()
    for n in swarm5.nodes:
        swarm5.skew(n, 0)


def test_every_object_is_labelled_and_only_127_0_0_1_is_published(swarm, swarm5):
    run = {"sd.harness": "1", "sd.cluster": swarm5.name, "sd.run": swarm5.run_id}
    services = swarm.services.list(filters={"label": f"sd.cluster={swarm5.name}"})
    assert sorted(s.attrs["Spec"]["Labels"]["sd.node"] for s in services) == ["n1", "n2", "n3", "n4", "n5"]
    for svc in services:
        spec = svc.attrs["Spec"]
        assert run.items() <= spec["Labels"].items()
        assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
        assert spec["EndpointSpec"]["Mode"] == "dnsrr" and not spec["EndpointSpec"].get("Ports")
    (net,) = swarm.networks.list(filters={"label": f"sd.cluster={swarm5.name}"})
    assert net.attrs["Driver"] == "overlay" and run.items() <= net.attrs["Labels"].items()
    volumes = swarm.volumes.list(filters={"label": f"sd.cluster={swarm5.name}"})
    assert len(volumes) == 5 and all(run.items() <= v.attrs["Labels"].items() for v in volumes)
    (gw,) = swarm.containers.list(filters={"label": [f"sd.cluster={swarm5.name}", "sd.role=gateway"]})
    bindings = [b for bs in gw.attrs["HostConfig"]["PortBindings"].values() for b in bs]
    assert len(bindings) == 5 and {b["HostIp"] for b in bindings} == {"127.0.0.1"}
    assert requests.get(swarm5.url("n3") + "/health", timeout=2).ok


def test_partition_sides_converge_alone_then_all_after_heal(healthy):
    scenarios.run(healthy, scenarios.partition_heal(WITHIN))


def test_deregistration_during_partition_stays_deleted(healthy):
    scenarios.run(healthy, scenarios.deregister_in_partition(WITHIN))


def test_killed_node_keeps_data_and_catches_up(healthy):
    scenarios.run(healthy, scenarios.kill_restart(WITHIN))


def test_skewed_clock_cannot_overwrite_newer_data(healthy):
    scenarios.run(healthy, scenarios.skewed_clock(WITHIN, seconds=600))


def test_cluster_converges_under_30_percent_packet_loss(healthy):
    c = healthy
    for n in c.nodes:
        c.loss(n, 30)
    c.register("n2", "10.17.2.1:80", "lossy")
    c.register("n4", "10.17.2.2:80", "lossy")
    c.wait_converged(timeout=WITHIN * 2, expect_present=["10.17.2.1:80", "10.17.2.2:80"])


def test_one_way_cut_pause_and_delay_take_effect_or_say_why(healthy):
    c = healthy
    c.partition_one_way("n2", "n3")
    assert c.faults.probe_links("n2", ["n3"]) == {("n2", "n3"): False}
    assert c.faults.probe_links("n3", ["n2"]) == {("n3", "n2"): True}
    c.heal()
    assert c.pause("n4") in ("freezer", "sigstop")
    c.register("n1", "10.17.1.1:80", "while-paused")
    c.wait_converged(timeout=WITHIN, nodes=["n1", "n2", "n3", "n5"], expect_present=["10.17.1.1:80"])
    c.unpause("n4")
    c.wait_converged(timeout=WITHIN, expect_present=["10.17.1.1:80"])
    try:
        c.delay("n1", 50)
    except FaultNotSupported as exc:
        assert "netem" in str(exc)


def test_restart_keeps_url_and_data_and_a_stopped_node_stays_down(healthy):
    c = healthy
    url = c.url("n2")
    c.register("n2", "10.17.3.1:80", "db")
    c.restart("n2")
    assert c.url("n2") == url and "10.17.3.1:80" in c.views(["n2"])["n2"]
    c.stop("n5")
    c.settle(2.0)
    assert c.state("n5") == "exited"  # restart policy none: swarm does not bring it back


def test_attach_from_elsewhere_sees_the_same_nodes(swarm, swarm5):
    other = Cluster.attach(swarm5.name, client=swarm, timeline=False, backend="swarm")
    assert other.nodes == swarm5.nodes and other.run_id == swarm5.run_id
    assert {n: other.url(n) for n in other.nodes} == {n: swarm5.url(n) for n in swarm5.nodes}
    assert {n: other.node(n).ip for n in other.nodes} == {n: swarm5.node(n).ip for n in swarm5.nodes}
    assert other.status()["converged"]


def test_two_clusters_side_by_side_then_gc_by_name(swarm, swarm5, node_image, run_tag):
    backend = SwarmBackend(swarm)
    with Cluster(nodes=2, name=f"sw2-{run_tag}", image=node_image, backend=backend, interval=INTERVAL,
                 fanout=FANOUT, timeline=False) as c:
        c.register("n1", "10.17.4.1:80", "side")
        c.wait_converged(timeout=WITHIN, expect_present=["10.17.4.1:80"])
        assert "10.17.4.1:80" not in swarm5.views(["n1"])["n1"]
    assert backend.gc(f"sw2-{run_tag}")["services"] == 0  # down left nothing behind
    assert swarm5.status()["converged"]


def test_the_plugin_example_runs_on_swarm(swarm, node_image, pytester):
    pytester.makepyfile(test_discovery=EXAMPLE)
    result = pytester.runpytest("--gossip-backend", "swarm", "--gossip-image", node_image, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert not [s.name for s in swarm.services.list() if s.name.startswith("sd-pytest-")]  # its clusters went


def test_timeline_records_faults(swarm5):
    events = {e["event"] for e in timeline.read(swarm5.timeline.path)}
    assert {"up", "partition", "heal", "kill", "start", "loss", "skew", "converged"} <= events


def test_late_joiner_knowing_one_seed_catches_up_through_its_own_gateway(healthy):
    c = healthy
    c.register("n4", "10.17.5.1:80", "old-news")
    c.wait_converged(timeout=WITHIN, expect_present=["10.17.5.1:80"])
    joiner = c.add_node()
    c.wait_converged(timeout=WITHIN, expect_present=["10.17.5.1:80", f"{joiner}:5000"])
    assert requests.get(c.url(joiner) + "/health", timeout=2).ok
