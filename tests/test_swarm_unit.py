"""The swarm backend against a fake swarm manager: what it asks swarm for, how it finds tasks, what it refuses."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from harness import backends, cli
from harness.backends import Spec, swarmmode, swarmplan, tasks
from harness.backends.swarm import SwarmBackend
from harness.cluster import Cluster
from harness.errors import ClusterExists, HarnessError, ImageNotFound

from .fakeswarm import IMAGE_ID, FakeSwarmClient, swarm_node
from .test_cluster_unit import FakeHttp


def make(client, nodes=3, name="s", backend=None, **kwargs) -> Cluster:
    c = Cluster(nodes=nodes, name=name, backend=backend or SwarmBackend(client), timeline=False, **kwargs)
    c.http = FakeHttp()
    return c


@pytest.fixture
def client():
    return FakeSwarmClient()


@pytest.fixture
def cluster(client):
    return make(client).up()


def created(client, what):
    return [c for c in client.calls if c[0] == what]


# ---------------------------------------------------------------------------- the plan


def test_a_node_service_is_pinned_aliased_dnsrr_never_restarted_and_unpublished():
    spec = Spec("s", interval=0.2, fanout=3, run_id="r1")
    kw = swarmplan.service_kwargs(spec, "n3", ["n1", "n2"], IMAGE_ID, "node-a")
    assert kw["name"] == "sd-s-n3" and kw["hostname"] == "n3" and kw["image"] == IMAGE_ID
    ((network, aliases),) = [(n["Target"], n["Aliases"]) for n in kw["networks"]]
    assert (network, aliases) == ("sd-s", ["n3"])
    assert kw["endpoint_spec"] == {"Mode": "dnsrr"}  # no VIP, and no published port
    assert kw["restart_policy"]["Condition"] == "none"
    assert kw["cap_add"] == ["NET_ADMIN"] and kw["constraints"] == ["node.id==node-a"]
    assert kw["healthcheck"]["Test"] == ["NONE"]
    assert {"SD_ADVERTISE=n3:5000", "SD_SEEDS=n1:5000,n2:5000", "SD_INTERVAL=0.2", "SD_FANOUT=3"} <= set(kw["env"])
    run = {"sd.harness": "1", "sd.cluster": "s", "sd.run": "r1", "sd.backend": "swarm"}
    assert kw["labels"] == {**run, "sd.node": "n3", "sd.image": "sd-node:latest"}
    assert "sd.node" not in kw["container_labels"]  # the engine backend never takes a task for its own node
    (mount,) = kw["mounts"]
    assert mount["Source"] == "sd-s-n3-data" and mount["VolumeOptions"]["Labels"] == run


def test_swarm_is_a_backend_by_name(client):
    chosen = backends.get("swarm", client)
    assert isinstance(chosen, SwarmBackend) and isinstance(chosen, backends.Backend) and chosen.client is client


def test_spec_is_read_back_from_a_service(client, cluster):
    svc = client.services.get("sd-s-n2")
    spec = swarmplan.spec_of(svc.attrs, "s")
    assert (spec.image, spec.run_id) == ("sd-node:latest", cluster.run_id)
    assert spec.gossip_keys == cluster.spec.gossip_keys != ""  # so a node added after attach can join


def test_nodes_are_placed_round_robin_on_ready_active_swarm_nodes_by_hostname():
    nodes = [swarm_node("b", "beta"), swarm_node("a", "alpha"), swarm_node("d", "down", state="down"),
             swarm_node("x", "drained", availability="drain")]
    assert [swarmplan.swarm_node_for(f"n{k}", nodes) for k in (1, 2, 3)] == ["a", "b", "a"]
    with pytest.raises(HarnessError, match="no ready, active swarm node"):
        swarmplan.swarm_node_for("n1", nodes[2:])


def test_overlay_subnet_avoids_every_known_network():
    taken = [{"IPAM": {"Config": [{"Subnet": "10.214.0.0/24"}, {"Subnet": "10.214.1.0/25"}]}}, {"IPAM": None}]
    assert swarmplan.free_subnet(taken, "10.214.0.0/16") == "10.214.2.0/24"


def test_current_task_is_the_newest_wanted_running_whatever_its_fraction_digits():
    old = {"ID": "a", "DesiredState": "shutdown", "CreatedAt": "2026-01-01T00:00:09.9Z"}
    first = {"ID": "b", "DesiredState": "running", "CreatedAt": "2026-01-01T00:00:01.1Z"}
    later = {"ID": "c", "DesiredState": "running", "CreatedAt": "2026-01-01T00:00:01.12Z"}
    assert tasks.current_task([old, later, first])["ID"] == "c"
    assert tasks.current_task([old])["ID"] == "a" and tasks.current_task([]) is None


def test_task_state_prefers_its_container_then_its_own_state():
    task = {"Status": {"State": "running", "ContainerStatus": {"ContainerID": "c1"}}}
    assert tasks.harness_state(task, {"c1": "paused"}) == "paused"
    assert tasks.harness_state(task, {}) == "running"
    assert tasks.harness_state({"Status": {"State": "failed"}}, {}) == "exited"
    assert tasks.harness_state({"Status": {"State": "preparing"}}, {}) == "created"
    assert tasks.harness_state(None, {}) == "missing"


# ---------------------------------------------------------------------------- up, gateway, labels


def test_up_makes_a_labelled_attachable_overlay_and_one_service_per_node(client, cluster):
    (net,) = created(client, "network.create")
    assert net[1] == "sd-s" and net[2]["driver"] == "overlay" and net[2]["attachable"]
    assert net[2]["labels"] == {"sd.harness": "1", "sd.cluster": "s", "sd.run": cluster.run_id, "sd.backend": "swarm"}
    assert sorted(c[1] for c in created(client, "service.create")) == ["sd-s-n1", "sd-s-n2", "sd-s-n3"]
    assert {c[2]["image"] for c in created(client, "service.create")} == {IMAGE_ID}  # by ID: swarm pulls nothing
    assert cluster.node("n2").ip.startswith("10.214.0.")


def test_one_gateway_publishes_every_node_on_127_0_0_1_only(client, cluster):
    ((_, name, kw),) = created(client, "container.run")
    assert name == "sd-s-gw" and kw["network"] == "sd-s" and kw["labels"]["sd.role"] == "gateway"
    assert kw["command"] == ["sd-gateway", "7001=n1:5000", "7002=n2:5000", "7003=n3:5000"]
    assert {host for host, _ in kw["ports"].values()} == {"127.0.0.1"}
    assert cluster.url("n2") == f"http://127.0.0.1:{kw['ports']['7002/tcp'][1]}"
    gw_ip = client.containers.get("sd-s-gw").ip
    assert cluster.deployment.harness_sources == [gw_ip]  # spared by loss, as the bridge gateway is


def test_a_gateway_port_clash_is_retried_on_other_ports(client):
    client.port_clashes = 1
    c = make(client).up()
    assert len(created(client, "container.run")) == 2 and c.url("n1").startswith("http://127.0.0.1:")


def test_a_node_added_later_gets_its_own_gateway(client, cluster):
    joiner = cluster.add_node()
    assert joiner == "n4" and client.containers.get("sd-s-gw-n4").labels["sd.role"] == "gateway"
    assert cluster.url("n4") != cluster.url("n3")


def test_without_a_swarm_up_says_what_to_run_and_creates_nothing():
    client = FakeSwarmClient(state="inactive")
    with pytest.raises(HarnessError, match=r"docker swarm init --advertise-addr 127\.0\.0\.1.*--init-swarm"):
        make(client).up()
    assert not created(client, "swarm.init") and not created(client, "network.create")


def test_a_swarm_worker_is_refused():
    with pytest.raises(HarnessError, match="swarm worker"):
        make(FakeSwarmClient(state="worker")).up()


def test_init_swarm_makes_a_loopback_swarm_and_its_down_leaves_it():
    client = FakeSwarmClient(state="inactive")
    c = make(client, backend=SwarmBackend(client, init_swarm=True)).up()
    ((_, kwargs),) = created(client, "swarm.init")
    assert kwargs["advertise_addr"] == "127.0.0.1" and kwargs["listen_addr"] == "127.0.0.1:2377"
    assert c.down()["swarm_left"] == 1 and created(client, "swarm.leave")


def test_cluster_by_name_makes_a_swarm_when_asked():
    client = FakeSwarmClient(state="inactive")
    c = Cluster(nodes=3, name="s", backend="swarm", client=client, init_swarm=True, timeline=False)
    c.http = FakeHttp()
    c.up()
    assert created(client, "swarm.init")
    assert c.down()["swarm_left"] == 1


def test_a_swarm_that_was_there_is_never_left(client):
    c = make(client, backend=SwarmBackend(client, init_swarm=True)).up()
    assert not created(client, "swarm.init")
    assert c.down()["swarm_left"] == 0 and not created(client, "swarm.leave")


def test_a_missing_image_or_a_name_in_use_is_refused_before_anything_is_made(client, cluster):
    with pytest.raises(ClusterExists):
        make(client).up()
    with pytest.raises(ImageNotFound, match="build-image.sh"):
        make(client, name="other", image="nope:1").up()
    assert len(created(client, "network.create")) == 1


# ---------------------------------------------------------------------------- faults and lifecycle


def test_partition_rules_go_into_the_task_containers_and_are_probed(client, cluster):
    cluster.partition([["n1"], ["n2", "n3"]])
    n1 = client.containers.get("sd-s-n1.1")
    assert any(cluster.node("n2").ip in rule for rule in n1.rules["SD-FAULTS-IN"])
    assert cluster.faults.probe_links("n1", ["n2"]) == {("n1", "n2"): False}
    cluster.heal()
    assert cluster.faults.probe_links("n1", ["n2"]) == {("n1", "n2"): True}


def test_loss_spares_the_gateway(client, cluster):
    cluster.loss("n2", 30)
    rules = client.containers.get("sd-s-n2.1").rules["SD-LOSS"]
    assert any(client.containers.get("sd-s-gw").ip in r for r in rules)


def test_a_killed_node_stays_down_and_start_brings_a_new_task_on_the_same_url(client, cluster):
    url, ip = cluster.url("n3"), cluster.node("n3").ip
    cluster.kill("n3")
    assert cluster.state("n3") == "exited" and cluster.states()["n3"] == "exited"
    assert len(client.services.get("sd-s-n3").tasks) == 1  # restart policy none: nothing came back
    cluster.start("n3")
    assert cluster.state("n3") == "running" and cluster.url("n3") == url
    assert cluster.node("n3").ip != ip  # a new task has a new overlay IP; faults now aim at it
    assert ("service.update", "sd-s-n3", {"ForceUpdate": 1}) in client.calls


def test_attach_finds_nodes_ports_and_sources_by_labels(client, cluster):
    other = Cluster.attach("s", backend=SwarmBackend(client), timeline=False)
    assert other.nodes == ["n1", "n2", "n3"] and other.run_id == cluster.run_id
    assert {n: other.url(n) for n in other.nodes} == {n: cluster.url(n) for n in cluster.nodes}
    assert other.deployment.harness_sources == cluster.deployment.harness_sources


def test_down_removes_only_this_clusters_swarm_objects(client, cluster):
    make(client, name="t").up()
    removed = cluster.down()
    assert removed["services"] == 3 and removed["networks"] == 1 and removed["volumes"] == 3
    assert removed["containers"] == 4  # three tasks and the gateway
    assert sorted(client.services.items) == ["sd-t-n1", "sd-t-n2", "sd-t-n3"]


# ---------------------------------------------------------------------------- other hosts


def test_tasks_on_other_hosts_are_reached_through_their_engine():
    remote = FakeSwarmClient()
    made = []
    engines = swarmmode.Engines(FakeSwarmClient(nodes=[swarm_node("local", "here"), swarm_node("r", "far")]),
                                {"far": "ssh://me@far"}, connect=lambda url: made.append(url) or remote)
    assert engines.for_node("local") is engines.manager and engines.for_node("r") is remote
    assert engines.for_node("r") is remote and made == ["ssh://me@far"]
    with pytest.raises(HarnessError, match="SD_SWARM_HOSTS=r"):
        swarmmode.Engines(FakeSwarmClient(nodes=[swarm_node("r", "")]), {}).for_node("r")


def test_hosts_come_from_the_environment():
    assert swarmmode.hosts_from_env("a=ssh://u@a, b=tcp://10.0.0.2:2376") == {"a": "ssh://u@a",
                                                                              "b": "tcp://10.0.0.2:2376"}
    with pytest.raises(HarnessError, match="expected hostname=docker-url"):
        swarmmode.hosts_from_env("just-a-name")


# ---------------------------------------------------------------------------- command line


@pytest.fixture
def recorded():
    calls = []
    backend = {"create": lambda **kw: calls.append(("create", kw)) or _Stop(),
               "attach": lambda name, **kw: calls.append(("attach", name, kw)) or _Stop(),
               "gc": lambda cluster=None: {}}
    return backend, calls


class _Stop:
    def up(self):
        raise HarnessError("stop here")

    def heal(self):
        pass


def test_cli_up_on_swarm_passes_the_backend_and_init_swarm(recorded):
    backend, calls = recorded
    result = CliRunner().invoke(cli.main, ["up", "--backend", "swarm", "--init-swarm", "-n", "2"], obj=backend)
    assert result.output.startswith("error: stop here")
    assert calls[0][1]["backend"] == "swarm" and calls[0][1]["init_swarm"] is True


def test_cli_attaches_on_the_backend_given_by_option_or_environment(recorded):
    backend, calls = recorded
    result = CliRunner().invoke(cli.main, ["heal", "--name", "x"], obj=backend, env={"SD_BACKEND": "swarm"})
    assert result.exit_code == 0
    assert calls == [("attach", "x", {"backend": "swarm"})]


def test_cli_init_swarm_without_the_swarm_backend_is_an_error():
    result = CliRunner().invoke(cli.main, ["up", "--init-swarm"])
    assert result.exit_code == 1 and result.output.strip() == "error: --init-swarm needs --backend swarm"


def test_cli_experiment_on_swarm_makes_its_clusters_there(recorded, tmp_path):
    backend, calls = recorded
    result = CliRunner().invoke(cli.main, ["experiment", "--backend", "swarm", "--nodes", "3", "--repeats", "1",
                                           "--out", str(tmp_path / "run")], obj=backend)
    assert result.exit_code != 0  # the recorded stand-in cannot run trials
    assert calls and calls[0][0] == "create" and calls[0][1]["backend"] == "swarm"
