"""POST register_instance, served ahead of Flask, answers byte for byte as the Flask view would."""

from __future__ import annotations

import sqlite3

import pytest
from flask import Flask
from werkzeug.test import Client

from node.app import create_app

BODIES = [
    b'{"address": "10.0.0.1:80", "app_name": "web"}',
    b'{"address": "10.0.0.1:80", "app_name": "web"}',  # the renewal: 200
    b'{"address": "h:00080", "app_name": "caf\xc3\xa9", "last_update": 1699999000}',
    b'{"address": "10.0.0.2:80", "app_name": "web", "last_update": 1800000000}',  # too far ahead
    b'{"address": "10.0.0.2:80", "app_name": "web", "last_update": true}',
    b'{"address": "10.0.0.2:80", "app_name": "service-discovery"}',  # reserved: 403
    b'{"address": "10.0.0.7", "app_name": "web"}',
    b'{"address": 7, "app_name": "web"}',
    b'{"address": "10.0.0.2:80", "app_name": " "}',
    b'{"address": "\xe2\x80\x8b:80", "app_name": "web"}',
    b'["10.0.0.2:80"]',
    b"null",
    b"not json",
    b"\xff\xfe",
    b"",
    b"[" * 10_000,  # nested too deeply
]


def flask_only(app: Flask):
    """The same app without the middleware in front of Flask: every request reaches the view."""
    return lambda environ, start_response: Flask.wsgi_app(app, environ, start_response)


@pytest.mark.parametrize("path", ["/registry/register_instance", "/register/register_instance"])
def test_every_answer_equals_the_flask_views(make_node, path):
    fast = Client(create_app(node=make_node("n1:5001")))
    view = Client(flask_only(create_app(node=make_node("n2:5001"))))
    for body in BODIES:
        a = fast.post(path, data=body, content_type="application/json")
        b = view.post(path, data=body, content_type="application/json")
        assert (a.status, a.headers.get("Content-Type"), a.data) == (b.status, b.headers.get("Content-Type"), b.data)


def test_the_write_is_the_same_whichever_way_it_is_served(make_node):
    fast_node, view_node = make_node("n1:5001"), make_node("n2:5001")
    fast, view = Client(create_app(node=fast_node)), Client(flask_only(create_app(node=view_node)))
    for body in BODIES:
        fast.post("/registry/register_instance", data=body)
        view.post("/registry/register_instance", data=body)
    assert dict(fast_node.store.snapshot().entries).keys() == dict(view_node.store.snapshot().entries).keys() == {
        "10.0.0.1:80", "h:80"}


def test_other_methods_still_reach_flask(client):
    resp = client.get("/registry/register_instance")
    assert resp.status_code == 405
    assert resp.get_json()["error"] == "method_not_allowed"
    assert "POST" in resp.headers["Allow"]


def test_a_failed_commit_answers_503_and_stores_nothing(client, node, monkeypatch):
    def broken(*args):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(node.store, "_persist", broken)
    resp = client.post("/registry/register_instance", json={"address": "a:1", "app_name": "web"})
    assert resp.status_code == 503
    assert resp.get_json() == {"error": "store_unavailable", "message": "the write was not stored: disk I/O error"}
    assert "a:1" not in node.store.snapshot().entries
