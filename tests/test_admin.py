"""Admin endpoints: off (403) unless enabled; when on, only sane clock offsets and valid JSON."""

from __future__ import annotations

import json

import pytest

from node.app import create_app
from node.config import PRESETS, ConfigError, from_args

T0 = 1_700_000_000  # FakeClock's start
OFF = {"error": "forbidden", "message": "admin endpoints are off; start the node with --enable-admin"}


@pytest.fixture
def closed(make_node):
    """A client of a node started without --enable-admin."""
    return create_app(node=make_node("n9:5009", enable_admin=False)).test_client()


def strict_json(resp):
    """The body parsed as strict JSON (NaN and Infinity are not JSON)."""
    def refuse(token):
        raise ValueError(f"not JSON: {token}")
    return json.loads(resp.get_data(as_text=True), parse_constant=refuse)


def test_admin_is_off_in_every_preset_and_by_default():
    assert not any(p.enable_admin for p in PRESETS.values())
    assert from_args(["--port", "5000"], {}).enable_admin is False
    assert from_args([], {"SD_PORT": "5000", "SD_ENABLE_ADMIN": "0"}).enable_admin is False
    assert from_args([], {"SD_PORT": "5000", "SD_ENABLE_ADMIN": "1"}).enable_admin is True
    assert from_args(["--port", "5000", "--enable-admin"], {}).enable_admin is True


@pytest.mark.parametrize("method, path", [
    ("GET", "/admin/clock"), ("POST", "/admin/clock"), ("DELETE", "/admin/clock"), ("GET", "/admin/other"),
])
def test_admin_answers_403_json_when_off(closed, method, path):
    resp = closed.open(path, method=method, json={"offset": 600})
    assert resp.status_code == 403
    assert resp.get_json() == OFF
    assert closed.get("/health").status_code == 200  # the rest still serves


def test_admin_off_leaves_the_clock_alone(make_node, closed):
    closed.post("/admin/clock", json={"offset": 600})
    resp = closed.post("/registry/register_instance", json={"address": "a:1", "app_name": "web"})
    assert resp.get_json()["last_update"] == T0


def test_admin_on_sets_and_reads_the_offset(client):
    resp = client.post("/admin/clock", json={"offset": -3600.5})
    assert resp.status_code == 200 and strict_json(resp) == {"offset": -3600.5, "wall": T0 - 3600.5}
    got = client.get("/admin/clock")
    assert got.status_code == 200 and strict_json(got)["offset"] == -3600.5
    assert client.post("/admin/clock", json={"offset": 315_360_000}).status_code == 200  # 10 years: allowed


@pytest.mark.parametrize("raw", [
    '{"offset": NaN}', '{"offset": Infinity}', '{"offset": -Infinity}', '{"offset": 1e999}',
    '{"offset": 315360001}', '{"offset": -1e12}', "{\"offset\": 1" + "0" * 400 + "}",
    '{"offset": true}', '{"offset": false}', '{"offset": "5"}', '{"offset": null}', '{"offset": [5]}', "{}",
], ids=["nan", "inf", "-inf", "overflow", "10y+1s", "-huge", "huge-int", "true", "false", "string", "null",
        "list", "missing"])
def test_admin_refuses_offsets_that_are_not_sane_numbers(client, raw):
    resp = client.post("/admin/clock", data=raw, content_type="application/json")
    assert resp.status_code == 400
    assert strict_json(resp)["error"] == "bad_request"
    after = client.get("/admin/clock")
    assert strict_json(after) == {"offset": 0.0, "wall": T0}


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e12"])
def test_start_offset_must_be_sane_too(value):
    with pytest.raises(ConfigError, match="clock_offset must be a finite number"):
        from_args(["--port", "5000", f"--clock-offset={value}"], {})
