"""GET /registry/list as HTTP clients meet it: gzip when accepted, ETags, 304 Not Modified."""

from __future__ import annotations

import gzip
import json

import pytest
import requests

from tests.test_api import T0, register


def fill(client, n: int = 30, app_name: str = "web") -> None:
    """Register ``n`` instances: a listing well over the 1 KiB under which nothing is compressed."""
    for i in range(n):
        assert register(client, f"10.0.0.{i + 1}:80", app_name=app_name).status_code in (200, 201)


def test_a_gzip_body_decodes_to_the_same_listing(client):
    fill(client)
    plain = client.get("/registry/list")
    packed = client.get("/registry/list", headers={"Accept-Encoding": "gzip, deflate"})
    assert "Content-Encoding" not in plain.headers
    assert packed.headers["Content-Encoding"] == "gzip"
    assert len(packed.data) < len(plain.data) / 4
    assert gzip.decompress(packed.data) == plain.data
    assert json.loads(plain.data)["10.0.0.1:80"]["app_name"] == "web"
    assert packed.headers["X-Registry-Index"] == plain.headers["X-Registry-Index"]
    assert plain.headers["Vary"] == packed.headers["Vary"] == "Accept-Encoding"


def test_filtered_listings_are_compressed_too(client):
    fill(client)
    fill(client, 3, app_name="db")  # the same addresses: now all of app db but 27 of web
    plain = client.get("/registry/list?app_name=web")
    packed = client.get("/registry/list?app_name=web", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.data) == plain.data
    assert len(json.loads(plain.data)) == 27


@pytest.mark.parametrize("accept", ["gzip;q=0", "identity", "br", ""])
def test_a_client_that_refuses_gzip_gets_plain_json(client, accept):
    fill(client)
    resp = client.get("/registry/list", headers={"Accept-Encoding": accept})
    assert "Content-Encoding" not in resp.headers
    assert len(resp.get_json()) == 30


def test_a_short_listing_is_sent_as_it_is(client):
    register(client, "a:1")
    resp = client.get("/registry/list", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in resp.headers
    assert resp.get_json() == {"a:1": {"app_name": "web", "last_update": T0, "status": "healthy", "version": 1}}


def test_a_matching_etag_gets_304_without_a_body(client):
    fill(client)
    first = client.get("/registry/list")
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = client.get("/registry/list", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    assert again.headers["X-Registry-Index"] == first.headers["X-Registry-Index"]
    # Weak comparison (RFC 9110), a list of tags, and * all match.
    for header in (f"W/{etag}", f'"other", {etag}', "*"):
        assert client.get("/registry/list", headers={"If-None-Match": header}).status_code == 304, header
    assert client.get("/registry/list", headers={"If-None-Match": '"other"'}).status_code == 200


def test_plain_and_gzip_bodies_have_their_own_etags(client):
    fill(client)
    plain = client.get("/registry/list")
    packed = client.get("/registry/list", headers={"Accept-Encoding": "gzip"})
    assert plain.headers["ETag"] != packed.headers["ETag"]
    assert client.get("/registry/list", headers={"Accept-Encoding": "gzip", "If-None-Match": packed.headers["ETag"]}
                      ).status_code == 304
    # The gzip tag names another representation than the one a plain client gets.
    assert client.get("/registry/list", headers={"If-None-Match": packed.headers["ETag"]}).status_code == 200


def test_a_write_changes_the_etag(client):
    fill(client)
    etag = client.get("/registry/list").headers["ETag"]
    register(client, "10.0.0.1:80")  # a renewal: a new version
    resp = client.get("/registry/list", headers={"If-None-Match": etag})
    assert resp.status_code == 200
    assert resp.headers["ETag"] != etag
    assert resp.get_json()["10.0.0.1:80"]["version"] == 31


def test_a_status_that_turns_with_time_changes_the_etag(client, clock, node):
    fill(client)
    etag = client.get("/registry/list").headers["ETag"]
    clock.advance(node.config.ttl)  # every entry turns expired; no write
    resp = client.get("/registry/list", headers={"If-None-Match": etag})
    assert resp.status_code == 200
    assert {v["status"] for v in resp.get_json().values()} == {"expired"}


def test_bad_filters_are_still_400_whatever_the_etag(client):
    fill(client)
    etag = client.get("/registry/list").headers["ETag"]
    resp = client.get("/registry/list?status=gone", headers={"If-None-Match": etag})
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "bad_request"


def test_through_waitress_a_real_client_gets_gzip_and_304(node, server):
    """requests sends Accept-Encoding: gzip and decodes it; waitress sends the cached bytes as a file."""
    url = f"http://127.0.0.1:{server}"
    with requests.Session() as s:
        for i in range(30):
            s.post(f"{url}/registry/register_instance", json={"address": f"10.0.0.{i + 1}:80", "app_name": "web"},
                   timeout=10).raise_for_status()
        packed = s.get(f"{url}/registry/list", timeout=10)
        plain = s.get(f"{url}/registry/list", headers={"Accept-Encoding": "identity"}, timeout=10)
        assert packed.headers["Content-Encoding"] == "gzip"
        assert int(packed.headers["Content-Length"]) < len(plain.content) / 4
        assert packed.content == plain.content  # decoded by requests
        assert len(packed.json()) == 30
        assert int(plain.headers["Content-Length"]) == len(plain.content)
        unchanged = s.get(f"{url}/registry/list", headers={"If-None-Match": packed.headers["ETag"]}, timeout=10)
        assert unchanged.status_code == 304 and unchanged.content == b""
        head = s.head(f"{url}/registry/list", timeout=10)
        assert head.status_code == 200 and head.content == b""
