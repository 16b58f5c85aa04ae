"""Errors, timeline and the wait helper, without Docker."""

import pytest

from harness import convergence, timeline
from harness.errors import ConvergenceTimeout, NodeNotFound, NodeStartError
from harness.wait import wait_until


class FakeClock:
    """A clock that only moves when the wait helper sleeps."""

    def __init__(self):
        self.now = 0.0

    def sleep(self, seconds):
        self.now += seconds

    def __call__(self):
        return self.now


def test_wait_until_returns_first_passing_result():
    values = iter([1, 2, 3, 4])
    clock = FakeClock()
    out = wait_until(lambda: next(values), passed=lambda v: v >= 3, timeout=10, interval=1,
                     sleep=clock.sleep, clock=clock)
    assert out.ok and out.last == 3 and out.attempts == 3


def test_wait_until_times_out_keeping_last_observation():
    clock = FakeClock()
    out = wait_until(lambda: "nope", passed=lambda v: False, timeout=2, interval=0.5, sleep=clock.sleep, clock=clock)
    assert not out.ok
    assert out.last == "nope"
    assert 2.0 <= out.elapsed <= 2.5


def test_wait_until_retries_listed_exceptions_only():
    clock = FakeClock()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return True

    assert wait_until(flaky, timeout=5, interval=1, retry_on=(ConnectionError,), sleep=clock.sleep, clock=clock).ok
    with pytest.raises(KeyError):
        wait_until(lambda: {}["x"], timeout=5, retry_on=(ConnectionError,), sleep=clock.sleep, clock=clock)


def test_timeline_appends_json_lines(tmp_path):
    path = tmp_path / "c" / "timeline.jsonl"
    tl = timeline.Timeline(path, clock=lambda: 12.5)
    tl.record("partition", groups=[["n1"], ["n2"]])
    tl.record("heal")
    assert timeline.read(path) == [
        {"ts": 12.5, "event": "partition", "groups": [["n1"], ["n2"]]},
        {"ts": 12.5, "event": "heal"},
    ]


def test_timeline_disabled_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    timeline.Timeline(None).record("x")
    assert list(tmp_path.iterdir()) == []


def test_default_timeline_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SD_HARNESS_DIR", str(tmp_path))
    assert timeline.default_path("demo") == tmp_path / "demo" / "timeline.jsonl"


def test_convergence_timeout_message_names_lagging_node_and_logs():
    report = convergence.check(
        {"n1": ("a", 1), "n2": ("a", 1), "n3": ("b", 0)},
        {"n1": {"x:1": {"version": 1}}, "n2": {"x:1": {"version": 1}}, "n3": {}},
    )
    err = ConvergenceTimeout("did not converge within 5s", report, {"n3": "line one\n" + "y" * 500})
    text = str(err)
    assert text.splitlines()[0] == "did not converge within 5s"
    assert "n3 lacks x:1" in text
    assert "--- log tail of n3 ---" in text
    assert max(len(line) for line in text.splitlines()) <= 245


def test_node_start_error_carries_logs():
    err = NodeStartError("n1 not healthy", {"n1": "boom"})
    assert err.logs == {"n1": "boom"}
    assert str(err).endswith("--- log tail of n1 ---\n    boom")


def test_node_not_found_message_is_not_quoted():
    assert str(NodeNotFound("no node 'n9'")) == "no node 'n9'"
