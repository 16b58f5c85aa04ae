"""Gossip keys: signing and checking, rotation with no failed exchange, config, keygen, metrics."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.localnode import NodeProcess
from node.config import ConfigError, from_args
from node.gossip import keyring_of
from node.keyring import (
    CLUSTER_HEADER,
    KEY_BYTES,
    REPLY,
    REQUEST,
    SIGNATURE_HEADER,
    Keyring,
    Rejected,
    generate_key,
    parse_keys,
)

ROOT = Path(__file__).resolve().parents[1]
OLD, NEW, STRANGER = generate_key(), generate_key(), generate_key()
BODY = b'{"v":1,"type":"sum","from":"a:1","buckets":["0"]}'


def ring(*keys: str, cluster: str = "default") -> Keyring:
    return Keyring(parse_keys(",".join(keys)), cluster)


def reason_of(keyring: Keyring, body: bytes, headers: dict, direction: str = REQUEST, context: str = "") -> str:
    try:
        keyring.check(body, headers, direction, context)
    except Rejected as exc:
        return exc.reason
    return "accepted"


# -- the keyring -------------------------------------------------------------------------------


def test_first_key_signs_every_key_verifies():
    headers = ring(NEW, OLD).seal(BODY, REQUEST)
    assert reason_of(ring(OLD, NEW), BODY, headers) == "accepted"
    assert reason_of(ring(NEW), BODY, headers) == "accepted"
    assert reason_of(ring(OLD), BODY, headers) == "bad_signature"


def test_signature_covers_body_cluster_direction_and_request():
    k = ring(OLD)
    request = k.seal(BODY, REQUEST)
    assert headers_are(request, cluster="default", signed=True)
    assert reason_of(k, BODY + b" ", request) == "bad_signature"
    assert reason_of(k, BODY, request, REPLY) == "bad_signature"  # a request is no reply
    reply = k.seal(BODY, REPLY, request[SIGNATURE_HEADER])
    assert reason_of(k, BODY, reply, REPLY, request[SIGNATURE_HEADER]) == "accepted"
    assert reason_of(k, BODY, reply, REPLY, "another request") == "bad_signature"
    # Same key, another cluster: the header says so, and without it the signature does.
    other = ring(OLD, cluster="prod").seal(BODY, REQUEST)
    assert reason_of(k, BODY, other) == "wrong_cluster"
    assert reason_of(k, BODY, {SIGNATURE_HEADER: other[SIGNATURE_HEADER]}) == "bad_signature"


def headers_are(headers: dict, *, cluster: str, signed: bool) -> bool:
    return headers[CLUSTER_HEADER] == cluster and (SIGNATURE_HEADER in headers) == signed


@pytest.mark.parametrize("signature", ["", "not base64!", base64.b64encode(b"x" * 32).decode()])
def test_keyed_ring_refuses_missing_or_bad_signatures(signature):
    headers = {CLUSTER_HEADER: "default", SIGNATURE_HEADER: signature}
    assert reason_of(ring(OLD), BODY, headers) == ("unsigned" if not signature else "bad_signature")


def test_open_ring_sends_unsigned_and_accepts_unsigned_but_checks_the_cluster():
    open_ring = Keyring()
    assert open_ring.open and headers_are(open_ring.seal(BODY, REQUEST), cluster="default", signed=False)
    assert reason_of(open_ring, BODY, {}) == "accepted"
    assert reason_of(open_ring, BODY, {CLUSTER_HEADER: "other"}) == "wrong_cluster"
    assert reason_of(ring(OLD), BODY, open_ring.seal(BODY, REQUEST)) == "unsigned"  # no silent downgrade


def test_keyring_repr_shows_no_key():
    assert OLD not in repr(ring(OLD)) and repr(parse_keys(OLD)[0]) not in repr(ring(OLD))
    config = from_args(["--port", "5000", "--gossip-keys", OLD], {})
    assert OLD not in repr(config)


# -- rotation --------------------------------------------------------------------------------------


def rekey(node, *keys: str) -> None:
    """Restart ``node`` with ``keys`` (in memory: its config and keyring change, its store stays)."""
    node.config = dataclasses.replace(node.config, gossip_keys=keys)
    node.keyring = keyring_of(node.config)


def all_pairs_exchange(nodes) -> list:
    return [a.exchange(b.address) for a, b in itertools.permutations(nodes, 2)]


def test_rotation_add_switch_remove_fails_no_exchange(make_node):
    nodes = [make_node(f"n{i}:500{i}", gossip_keys=(OLD,)) for i in (1, 2, 3)]
    nodes[0].register("10.0.0.1:80", "web")
    steps = [(OLD, NEW), (NEW, OLD), (NEW,)]  # add the new key second, switch it first, drop the old
    for keys in steps:
        for node in nodes:  # a rolling restart: one node at a time
            rekey(node, *keys)
            failed = [r for r in all_pairs_exchange(nodes) if not r.ok]
            assert failed == [], (keys, node.address, failed)
    assert all(n.stats.exchanges_failed == 0 and sum(n.stats.rejected.values()) == 0 for n in nodes)
    assert all("10.0.0.1:80" in n.listing() for n in nodes)
    stranger = make_node("n4:5004", gossip_keys=(OLD,))  # still on the removed key
    assert not any(r.ok for r in all_pairs_exchange([nodes[0], stranger]))


def test_switching_before_every_node_has_the_key_does_fail(make_node):
    a, b = make_node("n1:5001", gossip_keys=(OLD,)), make_node("n2:5002", gossip_keys=(OLD,))
    rekey(a, NEW, OLD)  # skipped step: b does not know NEW yet
    assert not a.exchange(b.address).ok
    assert b.stats.rejected["bad_signature"] == 1


def rejected_metric(client) -> dict[str, float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {s.labels["reason"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "sd_gossip_messages_rejected_total"}


def test_refused_messages_are_exported_by_reason(make_node, node, client):
    assert rejected_metric(client) == {"unsigned": 0, "bad_signature": 0, "wrong_cluster": 0}
    rekey(node, OLD)
    assert not make_node("n2:5002", gossip_keys=(STRANGER,)).exchange(node.address).ok
    assert not make_node("n3:5003").exchange(node.address).ok  # open: unsigned
    assert not make_node("n4:5004", gossip_keys=(OLD,), cluster="other").exchange(node.address).ok
    assert make_node("n5:5005", gossip_keys=(OLD,)).exchange(node.address).ok
    assert rejected_metric(client) == {"unsigned": 1, "bad_signature": 1, "wrong_cluster": 1}


# -- configuration and the command line ------------------------------------------------------------


def test_keys_cluster_and_admin_from_flags_and_env():
    c = from_args(["--port", "5000", "--gossip-keys", f"{NEW}, {OLD}", "--cluster", "prod", "--enable-admin"], {})
    assert (c.gossip_keys, c.cluster, c.enable_admin) == ((NEW, OLD), "prod", True)
    e = from_args([], {"SD_PORT": "5000", "SD_GOSSIP_KEYS": NEW, "SD_CLUSTER": "c-1", "SD_ENABLE_ADMIN": "1"})
    assert (e.gossip_keys, e.cluster, e.enable_admin) == ((NEW,), "c-1", True)
    d = from_args(["--port", "5000"], {})
    assert (d.gossip_keys, d.cluster, d.enable_admin) == ((), "default", False)
    assert keyring_of(c).keys == parse_keys([NEW, OLD]) and keyring_of(d).open


SHORT = base64.b64encode(b"k" * 16).decode()


@pytest.mark.parametrize("argv, env, fragment", [
    (["--gossip-keys", "not*base64"], {}, "gossip key 1 is not valid base64"),
    (["--gossip-keys", f"{OLD},{SHORT}"], {}, "gossip key 2 must be 32 bytes, got 16"),
    ([], {"SD_GOSSIP_KEYS": "abc"}, "gossip key 1 is not valid base64"),
    (["--cluster", "a b"], {}, "cluster must be"),
    ([], {"SD_CLUSTER": "x" * 65}, "cluster must be"),
    ([], {"SD_ENABLE_ADMIN": "maybe"}, "enable-admin must be 1 or 0"),
])
def test_bad_gossip_settings_are_one_line_config_errors(argv, env, fragment):
    with pytest.raises(ConfigError) as info:
        from_args(["--port", "5000", *argv], env)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert SHORT not in str(info.value)  # a key is named by its position, never shown


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "node", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})


def test_keygen_prints_one_fresh_valid_key():
    first, second = run("keygen"), run("keygen")
    assert first.returncode == 0 and first.stderr == ""
    [key] = first.stdout.split()
    assert len(base64.b64decode(key, validate=True)) == KEY_BYTES
    assert parse_keys(key) and key != second.stdout.strip()
    assert from_args(["--port", "5000", "--gossip-keys", key], {}).gossip_keys == (key,)


def test_bad_key_stops_the_node_with_one_line_and_help_still_lists_the_flags():
    bad = run("--port", "5000", "--gossip-keys", SHORT)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "node: invalid configuration: gossip key 1 must be 32 bytes, got 16"]
    helped = run("--help")
    assert helped.returncode == 0
    for flag in ("--port", "--gossip-keys", "--cluster", "--enable-admin", "keygen"):
        assert flag in helped.stdout


@pytest.mark.parametrize("flags, warned", [((), True), (("--gossip-keys", OLD), False)], ids=["open", "keyed"])
def test_an_open_node_warns_once_at_start(flags, warned):
    with NodeProcess("--log-level", "INFO", *flags) as proc:  # ready: it logged its start
        log = proc.log_tail(100_000)
    lines = [ln for ln in log.splitlines() if "gossip is not authenticated" in ln]
    assert [("WARNING" in ln) for ln in lines] == ([True] if warned else []), log
    assert OLD not in log


# -- the harness: a fresh key per cluster, found again by attach ------------------------------------


def test_harness_gives_each_cluster_a_fresh_key_that_attach_and_add_node_keep(capsys):
    from harness.cluster import Cluster
    from tests.fakedocker import FakeDockerClient
    from tests.test_cluster_unit import FakeHttp

    client = FakeDockerClient()

    def envs():
        return [c[2]["environment"] for c in client.calls if c[0] == "container.create"]

    def up(name):
        cluster = Cluster(nodes=2, name=name, client=client, timeline=False)
        cluster.http = FakeHttp()
        return cluster.up()

    a = up("ka")
    up("kb")
    ka, kb = envs()[0]["SD_GOSSIP_KEYS"], envs()[2]["SD_GOSSIP_KEYS"]
    assert ka != kb and len(parse_keys(ka)) == len(parse_keys(kb)) == 1
    assert [e["SD_GOSSIP_KEYS"] for e in envs()] == [ka, ka, kb, kb]
    assert [(e["SD_CLUSTER"], e["SD_ENABLE_ADMIN"]) for e in envs()] == [("ka", "1")] * 2 + [("kb", "1")] * 2

    found = Cluster.attach("ka", client=client, timeline=False)
    found.http = FakeHttp()
    found.add_node()
    assert envs()[-1]["SD_GOSSIP_KEYS"] == ka and envs()[-1]["SD_CLUSTER"] == "ka"
    assert ka not in repr(found.spec) and ka not in repr(a.spec)
    assert ka not in capsys.readouterr().out


def test_a_simulated_cluster_can_gossip_signed():
    from harness.sim import SIM, SimCluster

    sim = SimCluster(4, config=dataclasses.replace(SIM, gossip_keys=(OLD,)))
    sim.register("n3", "10.0.0.7:80", "web")
    sim.wait_converged(timeout=10, expect_present=["10.0.0.7:80"])
    nodes = [sim.node(n) for n in sim.nodes]
    assert all(not n.keyring.open for n in nodes)
    assert sum(n.stats.exchanges_ok for n in nodes) > 0
    assert sum(n.stats.exchanges_failed + sum(n.stats.rejected.values()) for n in nodes) == 0
