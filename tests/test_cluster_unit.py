"""Cluster against a fake Docker client: what it creates, which rules it installs, what it refuses."""

from __future__ import annotations

import ipaddress

import pytest

from harness import timeline
from harness.backends import engine
from harness.cluster import Cluster, gc
from harness.errors import (
    ClusterExists,
    ClusterNotFound,
    ConvergenceTimeout,
    FaultNotApplied,
    FaultNotSupported,
    HarnessError,
    ImageNotFound,
    InvalidPartition,
    NodeStartError,
)

from .fakedocker import FakeDockerClient


class FakeHttp:
    """Stands in for the node client: every node healthy (unless told), listings set by the test."""

    def __init__(self, healthy=True):
        self._healthy = healthy
        self.listings: dict[str, dict] = {}  # node -> address -> entry; a node absent does not answer

    def healthy(self, node):
        return self._healthy

    def views(self, nodes, path="/registry/list"):
        return {n: self.listings[n] for n in nodes if n in self.listings}

    def digests(self, nodes):
        return {n: (str(sorted(v)), len(v)) for n, v in self.views(nodes).items()}

    def close(self):
        pass


@pytest.fixture
def docker_client():
    return FakeDockerClient()


def make(client, nodes=3, name="t", healthy=True, **kwargs) -> Cluster:
    c = Cluster(nodes=nodes, name=name, client=client, timeline=kwargs.pop("timeline", False), **kwargs)
    c.http = FakeHttp(healthy)
    return c


@pytest.fixture
def cluster(docker_client):
    return make(docker_client).up()


def rules(client, node, cluster="t"):
    """The fake kernel's harness chains of ``node``: chain -> rules."""
    return {k: v for k, v in client.containers.get(f"sd-{cluster}-{node}").rules.items() if v}


def execs(client, node, cluster="t"):
    return client.containers.get(f"sd-{cluster}-{node}").execs


def ip(cluster, node):
    return cluster.node(node).ip


# ---------------------------------------------------------------------------- up, attach, gc


def test_up_creates_a_labelled_network_and_labelled_containers_on_localhost_ports(docker_client, cluster):
    (net,) = docker_client.networks.list()
    assert net.name == "sd-t"
    assert net.labels == {"sd.harness": "1", "sd.cluster": "t", "sd.run": cluster.run_id}
    subnet = ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"])
    assert subnet.subnet_of(ipaddress.ip_network(engine.SUBNET_POOL))
    created = {name: kw for call, name, kw in (c for c in docker_client.calls if c[0] == "container.create")}
    assert sorted(created) == ["sd-t-n1", "sd-t-n2", "sd-t-n3"]
    for k, (_name, kw) in enumerate(sorted(created.items()), start=1):
        assert kw["labels"] == {"sd.harness": "1", "sd.cluster": "t", "sd.run": cluster.run_id, "sd.node": f"n{k}"}
        host_ip, port = kw["ports"]["5000/tcp"]
        assert host_ip == "127.0.0.1" and cluster.url(f"n{k}") == f"http://127.0.0.1:{port}"
        assert kw["networking_config"]["sd-t"]["IPv4Address"] == str(subnet.network_address + 10 + k)
        assert kw["environment"]["SD_ADVERTISE"] == f"n{k}:5000"
        assert kw["cap_add"] == ["NET_ADMIN"]
        assert kw["healthcheck"] == {"test": ["NONE"]}  # the harness probes /health itself
    assert created["sd-t-n1"]["environment"]["SD_SEEDS"] == "n2:5000"
    assert created["sd-t-n3"]["environment"]["SD_SEEDS"] == "n1:5000,n2:5000"
    assert {v.labels["sd.node"] for v in docker_client.volumes.list()} == {"n1", "n2", "n3"}
    assert cluster.states() == {"n1": "running", "n2": "running", "n3": "running"}


def test_up_without_the_image_creates_nothing(docker_client):
    with pytest.raises(ImageNotFound, match="build it with docker/build-image.sh"):
        make(docker_client, image="sd-node:missing").up()
    assert not [c for c in docker_client.calls if c[0].endswith("create")]


def test_up_refuses_a_name_in_use(docker_client, cluster):
    with pytest.raises(ClusterExists, match="cluster 't' already exists"):
        make(docker_client).up()


def test_a_node_that_never_gets_healthy_fails_up_with_its_logs_and_leaves_nothing(docker_client):
    with pytest.raises(NodeStartError, match="nodes not healthy") as err:
        make(docker_client, nodes=2, healthy=False, start_timeout=0.3).up()
    assert set(err.value.logs) == {"n1", "n2"}
    assert not docker_client.containers.items and not docker_client.networks.items
    assert not docker_client.volumes.items


def test_attach_finds_the_cluster_by_its_labels(docker_client):
    made = make(docker_client, nodes=2, interval=0.5, fanout=2).up()
    found = Cluster.attach("t", client=docker_client, timeline=False)
    assert found.nodes == ["n1", "n2"] and found.size == 2
    assert [found.url(n) for n in found.nodes] == [made.url(n) for n in made.nodes]
    assert found.node("n2").ip == made.node("n2").ip
    assert (found.run_id, found.interval, found.fanout, found.ttl) == (made.run_id, 0.5, 2, None)
    assert found.deployment.harness_sources == made.deployment.harness_sources
    with pytest.raises(ClusterNotFound, match="no cluster named 'other'"):
        Cluster.attach("other", client=docker_client)


def test_gc_removes_by_label_only(docker_client):
    make(docker_client, nodes=2, name="a").up()
    make(docker_client, nodes=1, name="b").up()
    docker_client.containers.create("other", name="unrelated", labels={}, environment={}, network="x",
                                    networking_config={"x": {"IPv4Address": "1.2.3.4"}},
                                    ports={"5000/tcp": ("127.0.0.1", 1)})
    assert gc(docker_client, cluster="a") == {"containers": 2, "volumes": 2, "networks": 1}
    assert sorted(docker_client.containers.items) == ["sd-b-n1", "unrelated"]
    assert gc(docker_client) == {"containers": 1, "volumes": 1, "networks": 1}
    assert sorted(docker_client.containers.items) == ["unrelated"]


def test_add_node_seeds_from_n1(docker_client, cluster):
    assert cluster.add_node() == "n4"
    kw = [c for c in docker_client.calls if c[0] == "container.create"][-1][2]
    assert kw["environment"]["SD_SEEDS"] == "n1:5000" and cluster.size == 4


def test_wait_converged_names_who_lacks_what_and_records_it(docker_client, tmp_path):
    cluster = make(docker_client, timeline=tmp_path / "t.jsonl").up()
    entry = {"app_name": "web", "last_update": 1}
    cluster.http.listings = {"n1": {"10.0.0.1:80": entry}, "n2": {"10.0.0.1:80": entry}, "n3": {}}
    with pytest.raises(ConvergenceTimeout) as err:
        cluster.wait_converged(timeout=0.3, interval=0.1, expect_present=["10.0.0.1:80"])
    assert "n3 lacks 10.0.0.1:80" in str(err.value) and "log tail of n3" in str(err.value)
    cluster.http.listings["n3"] = {"10.0.0.1:80": entry}
    report = cluster.wait_converged(timeout=1, expect_present=["10.0.0.1:80"])
    assert report.converged and sorted(report.digests) == ["n1", "n2", "n3"]
    assert [e["event"] for e in timeline.read(tmp_path / "t.jsonl")][-2:] == ["convergence_timeout", "converged"]


def test_status_tells_paused_from_unreachable(docker_client, cluster):
    cluster.http.listings = {"n1": {}}
    docker_client.freezer_works = False
    cluster.pause("n2")
    rows = {r["name"]: r["status"] for r in cluster.status()["nodes"]}
    assert rows == {"n1": "ok", "n2": "paused", "n3": "unreachable"}


# ---------------------------------------------------------------------------- network faults


def test_partition_installs_rules_on_both_ends_of_every_cut_link(docker_client, cluster):
    full = cluster.partition([["n1"]])
    assert full == [["n1"], ["n2", "n3"]]
    assert rules(docker_client, "n1") == {
        "SD-FAULTS-OUT": [["-d", ip(cluster, "n2"), "-j", "DROP"], ["-d", ip(cluster, "n3"), "-j", "DROP"]],
        "SD-FAULTS-IN": [["-s", ip(cluster, "n2"), "-j", "DROP"], ["-s", ip(cluster, "n3"), "-j", "DROP"]],
    }
    for n in ("n2", "n3"):
        assert rules(docker_client, n) == {"SD-FAULTS-OUT": [["-d", ip(cluster, "n1"), "-j", "DROP"]],
                                           "SD-FAULTS-IN": [["-s", ip(cluster, "n1"), "-j", "DROP"]]}
    # then probed from inside every node, as root
    for n in cluster.nodes:
        assert any(argv[:2] == ["sd-probe", "connect"] for argv in execs(docker_client, n))
    assert all(c[3] == "root" for c in docker_client.calls if c[0] == "exec")


def test_partition_whose_probe_sees_the_link_open_raises(docker_client, tmp_path):
    cluster = make(docker_client, timeline=tmp_path / "t.jsonl").up()
    docker_client.rules_enforced = False
    with pytest.raises(FaultNotApplied, match="n1 -> n2: expected cut, probe found it open"):
        cluster.partition([["n1"], ["n2", "n3"]])
    events = [e["event"] for e in timeline.read(tmp_path / "t.jsonl")]
    assert "fault_not_applied" in events and "partition" not in events


def test_invalid_groups_are_refused_before_any_docker_call(docker_client, cluster):
    before = len(docker_client.calls)
    with pytest.raises(InvalidPartition):
        cluster.partition([["n1", "n2"], ["n2", "n3"]])
    assert [c[0] for c in docker_client.calls[before:]] == []


def test_a_new_partition_replaces_the_old_one(docker_client, cluster):
    cluster.partition([["n1"]])
    cluster.partition([["n3"]])
    for n in ("n1", "n2"):  # the n1 cut is gone, only the links to n3 are cut
        assert rules(docker_client, n) == {"SD-FAULTS-OUT": [["-d", ip(cluster, "n3"), "-j", "DROP"]],
                                           "SD-FAULTS-IN": [["-s", ip(cluster, "n3"), "-j", "DROP"]]}


def test_heal_flushes_every_chain_and_probes_all_links_open(docker_client, cluster):
    cluster.partition([["n1"]])
    cluster.loss("n2", 50)
    cluster.heal()
    for n in cluster.nodes:
        assert rules(docker_client, n) == {}
        script = [argv[2] for argv in execs(docker_client, n) if argv[:2] == ["sh", "-c"] and "-F" in argv[2]][-1]
        assert all(f"-F {chain}" in script for chain in ("SD-FAULTS-IN", "SD-FAULTS-OUT", "SD-LOSS"))
        assert ["sh", "-c", "tc qdisc del dev eth0 root 2>/dev/null || true"] in execs(docker_client, n)
        last = execs(docker_client, n)[-1]
        assert last[:2] == ["sd-probe", "connect"] and len(last) == 4 + 2  # both peers probed


def test_one_way_cut_matches_only_connections_src_opens(docker_client, cluster):
    cluster.partition_one_way("n1", "n2")
    ctdir = ["-m", "conntrack", "--ctdir", "ORIGINAL", "-j", "DROP"]
    assert rules(docker_client, "n1") == {"SD-FAULTS-OUT": [["-d", ip(cluster, "n2"), *ctdir]]}
    assert rules(docker_client, "n2") == {"SD-FAULTS-IN": [["-s", ip(cluster, "n1"), *ctdir]]}
    assert rules(docker_client, "n3") == {}
    assert cluster.faults.probe_links("n1", ["n2"]) == {("n1", "n2"): False}
    assert cluster.faults.probe_links("n2", ["n1"]) == {("n2", "n1"): True}
    with pytest.raises(HarnessError, match="two different nodes"):
        cluster.partition_one_way("n1", "n1")


def test_loss_spares_the_gateway_and_is_probed_from_a_peer(docker_client, cluster):
    cluster.loss("n2", 30)
    gateway = cluster.deployment.harness_sources[0]
    assert gateway.endswith(".1")
    assert rules(docker_client, "n2")["SD-LOSS"] == [
        ["-s", gateway, "-j", "RETURN"],
        ["!", "-i", "lo", "-m", "statistic", "--mode", "random", "--probability", "0.3000", "-j", "DROP"]]
    assert ["sd-probe", "loss", "--attempts", "20", ip(cluster, "n2")] in execs(docker_client, "n1")
    cluster.loss("n2", 0)
    assert rules(docker_client, "n2") == {}


def test_loss_that_drops_nothing_raises(docker_client, cluster):
    docker_client.loss_enforced = False
    with pytest.raises(FaultNotApplied, match="loss 50% on n3: 10 connects from n1 all succeeded"):
        cluster.loss("n3", 50)


def test_delay_without_netem_is_not_supported(docker_client, cluster):
    with pytest.raises(FaultNotSupported, match="netem"):
        cluster.delay("n1", 50)


def test_delay_with_netem_is_timed_from_a_peer(docker_client, cluster):
    docker_client.netem = True
    cluster.delay("n2", 80)
    assert ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "80ms"] in execs(docker_client, "n2")
    assert ["sd-probe", "connect-time", ip(cluster, "n2")] in execs(docker_client, "n1")


def test_faults_on_a_stopped_node_are_refused(docker_client, cluster):
    cluster.kill("n3")
    with pytest.raises(HarnessError, match="n3 is not running"):
        cluster.partition_one_way("n1", "n3")
    with pytest.raises(HarnessError, match="cannot apply loss to n3"):
        cluster.loss("n3", 10)


# ---------------------------------------------------------------------------- process faults


def test_kill_start_restart_stop(docker_client, cluster):
    cluster.partition([["n1"]])
    cluster.kill("n1")
    assert cluster.state("n1") == "exited"
    cluster.start("n1")
    assert cluster.state("n1") == "running" and rules(docker_client, "n1") == {}  # fresh namespace
    cluster.stop("n2")
    cluster.restart("n2")
    assert [c[0] for c in docker_client.calls if c[1] == "sd-t-n2" and c[0] != "exec"][-3:] == [
        "stop", "restart", "start"]


def test_kill_that_leaves_the_container_running_raises(docker_client, cluster, monkeypatch):
    monkeypatch.setattr(docker_client.containers.get("sd-t-n2"), "kill", lambda signal=None: None)
    with pytest.raises(FaultNotApplied, match="kill n2: container is running"):
        cluster.kill("n2")


def test_pause_falls_back_to_sigstop_and_checks_it(docker_client, cluster):
    assert cluster.pause("n1") == "freezer" and cluster.state("n1") == "paused"
    cluster.unpause("n1")
    docker_client.freezer_works = False
    assert cluster.pause("n2") == "sigstop"
    assert ["sd-probe", "stopped", "1"] in execs(docker_client, "n2")
    cluster.unpause("n2")
    assert not docker_client.containers.get("sd-t-n2").sigstopped
    docker_client.sigstop_works = False
    with pytest.raises(FaultNotApplied, match="SIGSTOP sent but the node process is not stopped"):
        cluster.pause("n3")
