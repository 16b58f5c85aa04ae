"""Clients cannot create peer entries: the nodes' own app name is reserved."""

from __future__ import annotations

from node.protocol import NODE_APP


def test_a_client_cannot_register_a_peer(client, node):
    before = node.peers()
    r = client.post("/registry/register_instance", json={"address": "10.9.9.9:5000", "app_name": NODE_APP})
    assert r.status_code == 403
    assert r.get_json()["error"] == "forbidden" and "reserved" in r.get_json()["message"]
    assert "10.9.9.9:5000" not in client.get("/registry/list").get_json()
    assert node.peers() == before


def test_other_app_names_still_register(client):
    r = client.post("/registry/register_instance", json={"address": "10.9.9.9:5000", "app_name": "web"})
    assert r.status_code == 201
