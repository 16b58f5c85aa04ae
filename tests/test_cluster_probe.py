"""sd-probe (docker/probe.py) on this host, and the harness's side of it: command lines and parsing."""

from __future__ import annotations

import json
import runpy
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import FaultNotApplied
from harness.netfaults import probe

SCRIPT = Path(__file__).resolve().parents[1] / "docker" / "probe.py"


def run_probe(*args: str) -> dict:
    out = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture
def closed_port():
    """A loopback port nobody listens on (connects are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def listener():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


def test_connect_reports_a_refused_port_as_cut(closed_port):
    assert run_probe("connect", "--port", str(closed_port), "--timeout", "0.5", "127.0.0.1") == {"127.0.0.1": False}


def test_connect_reports_a_listener_as_open(listener):
    assert run_probe("connect", "--port", str(listener), "--timeout", "0.5", "127.0.0.1") == {"127.0.0.1": True}


def test_loss_stops_at_the_first_failure(closed_port):
    assert run_probe("loss", "--attempts", "50", "--port", str(closed_port), "127.0.0.1") == {
        "attempts": 1, "failures": 1}


def test_loss_counts_every_attempt_when_none_fails(listener):
    assert run_probe("loss", "--attempts", "5", "--port", str(listener), "127.0.0.1") == {"attempts": 5, "failures": 0}


def test_connect_time_is_null_when_the_connect_fails(closed_port, listener):
    assert run_probe("connect-time", "--port", str(closed_port), "127.0.0.1") == {"seconds": None}
    took = run_probe("connect-time", "--port", str(listener), "127.0.0.1")["seconds"]
    assert 0 <= took < 1


def test_stopped_reads_the_process_state():
    result = run_probe("stopped", "1")
    assert result["pid"] == 1 and result["stopped"] is False and result["state"]


def test_bad_arguments_exit_2():
    out = subprocess.run([sys.executable, str(SCRIPT), "loss", "127.0.0.1"], capture_output=True, text=True)
    assert out.returncode == 2 and "--attempts" in out.stderr


def test_argv_the_harness_sends_matches_the_script():
    assert probe.connect(["10.0.0.11", "10.0.0.12"], timeout=0.5) == [
        "sd-probe", "connect", "--timeout", "0.5", "10.0.0.11", "10.0.0.12"]
    assert probe.loss("10.0.0.11", 7) == ["sd-probe", "loss", "--attempts", "7", "10.0.0.11"]
    parsed = runpy.run_path(str(SCRIPT))["parser"]().parse_args(probe.loss("10.0.0.11", 7)[1:])
    assert (parsed.command, parsed.attempts, parsed.target) == ("loss", 7, "10.0.0.11")


def test_parse_takes_the_last_json_line():
    assert probe.parse(0, "warning: something\n{\"a\": true}\n", "x") == {"a": True}


@pytest.mark.parametrize("rc,out,message", [
    (126, "OCI runtime exec failed: sd-probe: not found", "probe failed to run \\(rc 126\\)"),
    (0, "", "probe failed to run"),
    (0, "Traceback ...", "printed no JSON"),
    (0, "[1, 2]", "not an object"),
])
def test_parse_failures_are_fault_not_applied(rc, out, message):
    with pytest.raises(FaultNotApplied, match=message):
        probe.parse(rc, out, "probe from n1")
