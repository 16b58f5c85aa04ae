"""Configuration: presets, flags over env over preset, one-line errors, the CLI's exit."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import DEFAULT, LOCAL, PRESETS, TEST, Config, ConfigError, env_name, from_args, is_hostport

ROOT = Path(__file__).resolve().parents[1]


def test_flags_win_over_env_which_wins_over_preset():
    env = {"SD_PRESET": "local", "SD_INTERVAL": "0.5", "SD_FANOUT": "5", "SD_PORT": "6000"}

    assert from_args([], env).interval == 0.5
    assert from_args(["--interval", "0.7"], env).interval == 0.7
    c = from_args(["--port", "7000"], env)
    assert (c.port, c.fanout, c.ttl) == (7000, 5, LOCAL.ttl)  # ttl still from the local preset


def test_flag_preset_overrides_env_preset():
    c = from_args(["--preset", "test"], {"SD_PRESET": "default", "SD_PORT": "5000"})
    assert c.interval == TEST.interval


def test_env_is_read_from_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("SD_PORT", "5123")
    monkeypatch.setenv("SD_TTL", "12")
    c = from_args([])
    assert (c.port, c.ttl) == (5123, 12.0)


def test_empty_env_value_counts_as_unset():
    with pytest.raises(ConfigError, match="port is required"):
        from_args([], {"SD_PORT": ""})
    assert from_args([], {"SD_PORT": "5000", "SD_DB": ""}).db == DEFAULT.db


@pytest.mark.parametrize("flag, env, value, field, expected", [
    ("--host", "SD_HOST", "0.0.0.0", "host", "0.0.0.0"),
    ("--advertise", "SD_ADVERTISE", "node-1:5000", "advertise", "node-1:5000"),
    ("--db", "SD_DB", "/data/r.db", "db", "/data/r.db"),
    ("--interval", "SD_INTERVAL", "0.25", "interval", 0.25),
    ("--fanout", "SD_FANOUT", "4", "fanout", 4),
    ("--ttl", "SD_TTL", "10", "ttl", 10.0),
    ("--expire-grace", "SD_EXPIRE_GRACE", "7.5", "expire_grace", 7.5),
    ("--tombstone-ttl", "SD_TOMBSTONE_TTL", "600", "tombstone_ttl", 600.0),
    ("--clock-offset", "SD_CLOCK_OFFSET", "-600", "clock_offset", -600.0),
    ("--timeout", "SD_TIMEOUT", "2", "timeout", 2.0),
    ("--max-future", "SD_MAX_FUTURE", "5", "max_future", 5.0),
    ("--threads", "SD_THREADS", "2", "threads", 2),
    ("--log-level", "SD_LOG_LEVEL", "DEBUG", "log_level", "DEBUG"),
    ("--name", "SD_NAME", "n7", "name", "n7"),
    ("--seeds", "SD_SEEDS", "a:1,b:2", "seeds", ("a:1", "b:2")),
    ("--transport", "SD_TRANSPORT", "http", "transport", "http"),
    ("--max-datagram", "SD_MAX_DATAGRAM", "1400", "max_datagram", 1400),
])
def test_every_setting_has_a_flag_and_an_sd_env_var(flag, env, value, field, expected):
    assert env_name(flag[2:]) == env
    assert getattr(from_args([flag, value, "--port", "5000"], {}), field) == expected
    assert getattr(from_args([], {env: value, "SD_PORT": "5000"}), field) == expected


@pytest.mark.parametrize("raw, seeds", [
    ("a:1", ("a:1",)),
    ("a:1,b:2", ("a:1", "b:2")),
    (" a:1 , b:2 ,, ", ("a:1", "b:2")),
    ("10.0.0.1:5000,[::1]:5001", ("10.0.0.1:5000", "[::1]:5001")),
    (",", ()),
])
def test_seeds_parsing(raw, seeds):
    assert from_args(["--port", "5000", "--seeds", raw], {}).seeds == seeds


@pytest.mark.parametrize("argv, env, fragment", [
    ([], {}, "port is required"),
    (["--port", "0"], {}, "port must be 1..65535, got 0"),
    (["--port", "70000"], {}, "port must be 1..65535, got 70000"),
    (["--port", "-1"], {}, "port must be 1..65535"),
    (["--port", "http"], {}, "port must be a"),
    (["--port", "5000", "--fanout", "0"], {}, "fanout must be >= 1"),
    (["--port", "5000"], {"SD_FANOUT": "many"}, "fanout must be a"),
    (["--port", "5000", "--seeds", "a:1,nope"], {}, "seed must be HOST:PORT, got 'nope'"),
    (["--port", "5000", "--seeds", "a:0"], {}, "seed must be HOST:PORT"),
    (["--port", "5000", "--advertise", "host"], {}, "advertise must be HOST:PORT, got 'host'"),
    (["--port", "5000", "--advertise", "host:99999"], {}, "advertise must be HOST:PORT"),
    (["--port", "5000", "--tombstone-ttl", "60"], {}, "tombstone_ttl (60.0) must exceed ttl + expire_grace (60.0)"),
    (["--port", "5000", "--ttl", "100"], {}, "tombstone_ttl"),
    (["--port", "5000", "--preset", "fast"], {}, "unknown preset 'fast'"),
    (["--port", "5000"], {"SD_PRESET": "prod"}, "unknown preset 'prod'"),
    (["--port", "5000", "--interval", "fast"], {}, "interval must be a number, got 'fast'"),
    (["--port", "5000", "--interval", "0"], {}, "interval must be > 0"),
    (["--port", "5000", "--interval", "nan"], {}, "interval must be > 0"),
    (["--port", "5000", "--ttl", "-1"], {}, "ttl must be > 0"),
    (["--port", "5000", "--timeout", "0"], {}, "timeout must be > 0"),
    (["--port", "5000", "--expire-grace", "-1"], {}, "expire_grace must be >= 0"),
    (["--port", "5000", "--max-future", "-1"], {}, "max_future must be >= 0"),
    (["--port", "5000", "--threads", "0"], {}, "threads must be >= 1"),
    (["--port", "5000", "--transport", "tcp"], {}, "transport must be one of udp, http, got 'tcp'"),
    (["--port", "5000"], {"SD_TRANSPORT": "UDP"}, "transport must be one of udp, http, got 'UDP'"),
    (["--port", "5000", "--max-datagram", "100"], {}, "max_datagram must be 512..65507 bytes, got 100"),
    (["--port", "5000", "--max-datagram", "70000"], {}, "max_datagram must be 512..65507 bytes"),
])
def test_bad_config_is_a_one_line_config_error(argv, env, fragment):
    with pytest.raises(ConfigError) as info:
        from_args(argv, env)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_presets_are_valid_and_built_from_one_another():
    assert set(PRESETS) == {"default", "local", "test"}
    for preset in PRESETS.values():
        dataclasses.replace(preset, port=5000).validate()
    assert LOCAL.interval < DEFAULT.interval and LOCAL.ttl < DEFAULT.ttl
    assert TEST.ttl == LOCAL.ttl and TEST.interval < LOCAL.interval
    assert LOCAL.max_body == DEFAULT.max_body  # what a preset does not set comes from its base


def test_every_preset_keeps_tombstones_longer_than_any_copy_can_live():
    for preset in PRESETS.values():
        assert preset.tombstone_ttl > preset.ttl + preset.expire_grace


def test_advertised_address():
    assert Config(port=5000, advertise="reg-1:6000").advertised() == "reg-1:6000"
    assert Config(host="10.1.2.3", port=5000).advertised() == "10.1.2.3:5000"
    assert Config(host="0.0.0.0", port=5000).advertised() == f"{socket.gethostname()}:5000"


@pytest.mark.parametrize("field, value", [("probe_fanout", -1), ("probe_waves", 0), ("max_suspects", 0),
                                          ("health_max", -1)])
def test_failure_detection_settings_are_checked(field, value):
    with pytest.raises(ConfigError, match=field):
        Config(port=1, **{field: value}).validate()


@pytest.mark.parametrize("argv, env, on", [
    ([], {}, True),
    (["--no-eager-push"], {}, False),
    ([], {"SD_EAGER_PUSH": "off"}, False),
    (["--eager-push"], {"SD_EAGER_PUSH": "0"}, True),  # the flag wins
    (["--no-eager-push"], {"SD_EAGER_PUSH": "yes"}, False),
])
def test_eager_push_is_on_by_default_and_turned_off_by_flag_or_env(argv, env, on):
    assert from_args(["--port", "1", *argv], env).eager_push is on


def test_the_rest_fanout_is_one_by_default_set_by_flag_or_env_and_never_negative():
    assert from_args(["--port", "1"], {}).rest_fanout == 1
    assert from_args(["--port", "1", "--rest-fanout", "0"], {}).rest_fanout == 0
    assert from_args(["--port", "1"], {"SD_REST_FANOUT": "2"}).rest_fanout == 2
    with pytest.raises(ConfigError, match="rest_fanout"):
        Config(port=1, rest_fanout=-1).validate()


def test_failure_detection_settings_come_from_flags_and_env():
    config = from_args(["--port", "1", "--probe-fanout", "5"], {"SD_PROBE_WAVES": "3", "SD_MAX_SUSPECTS": "2"})
    assert (config.probe_fanout, config.probe_waves, config.max_suspects) == (5, 3, 2)
    assert from_args(["--port", "1"], {"SD_HEALTH_MAX": "0"}).health_max == 0


@pytest.mark.parametrize("value, ok", [
    ("a:1", True), ("10.0.0.1:65535", True), ("node-1.example_x:80", True), ("[::1]:80", True),
    ("a:0", False), ("a:65536", False), ("a:123456", False), ("a", False), ("a:", False), (":80", False),
    ("a:b", False), ("", False), ("a b:80", False), ("http://a:80", False), (None, False), (80, False),
    ("a:80\n", False), ("a:80 ", False), ("-a:80", False),
])
def test_is_hostport(value, ok):
    assert is_hostport(value) is ok


# -- python -m node ------------------------------------------------------------------------------


def run_node(args, env=None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("SD_")}
    return subprocess.Popen(
        [sys.executable, "-m", "node", *args],
        cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


CLI_CASES = [
    ([], {}, "port is required"),
    (["--port", "0"], {}, "port must be 1..65535"),
    (["--port", "5000", "--fanout", "0"], {}, "fanout must be >= 1"),
    (["--port", "5000"], {"SD_SEEDS": "a:1,bad"}, "seed must be HOST:PORT"),
    (["--port", "5000", "--preset", "nope"], {}, "unknown preset"),
]


def test_cli_with_bad_config_exits_nonzero_with_one_line_on_stderr():
    # Started together: each interpreter start costs a few hundred milliseconds.
    procs = [(run_node(argv, env), fragment) for argv, env, fragment in CLI_CASES]
    for proc, fragment in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode != 0, (fragment, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert fragment in lines[0]
        assert "Traceback" not in err
