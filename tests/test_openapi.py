"""GET /openapi.json: a valid OpenAPI 3 document naming every route, and a node answering as it says.

The fuzzing test (schemathesis) runs every documented operation against an in-process
node with generated requests, valid and invalid, and checks that no answer is a 5xx and
that each answer's status, content type and body are the documented ones.
"""

from __future__ import annotations

import itertools
import json
import socket
import sqlite3

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from node import apispec, watch
from node.app import create_app
from node.transport import GOSSIP_PATH

CONFORMANCE = [status_code_conformance, content_type_conformance, response_schema_conformance]
CHECKS = [not_a_server_error, *CONFORMANCE, unsupported_method]  # the last: a 405 names the methods in Allow
EXAMPLES = 40
"""Generated requests per operation (15 operations: the whole fuzz takes a few seconds)."""
SEQUENCES = 30
"""Generated sequences of linked operations, up to 6 steps each."""


@pytest.fixture(autouse=True)
def _short_watches(monkeypatch):
    """A generated watch may name the node's current index: hold it 50 ms at most, not minutes."""
    monkeypatch.setattr(watch, "MAX_WAIT", 0.05)
    monkeypatch.setattr(watch, "DEFAULT_WAIT", 0.05)


def served_spec(client) -> dict:
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    return r.get_json()


# -- the document ---------------------------------------------------------------------------------


def test_the_served_document_is_valid_openapi_3(client):
    spec = served_spec(client)
    assert spec["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(spec).validate()  # raises on a document the OpenAPI meta-schema refuses


def test_the_validation_above_can_fail(client):
    spec = served_spec(client)
    spec["paths"]["/health"]["get"]["responses"]["200"] = {"content": {}}  # a response without its description
    with pytest.raises(Exception, match="~1health"):  # the invalid part is named
        schemathesis.openapi.from_dict(spec).validate()


def flask_routes(app) -> set[tuple[str, str]]:
    """(path, method) of every route the Flask app serves, in OpenAPI's path spelling."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        out |= {(path, m.lower()) for m in (rule.methods or ()) - {"HEAD", "OPTIONS"}}
    return out


def documented(spec: dict) -> set[tuple[str, str]]:
    verbs = {"get", "put", "post", "delete", "patch"}
    return {(path, m) for path, item in spec["paths"].items() for m in item if m in verbs}


def test_every_route_is_documented_and_every_documented_operation_is_served(app, client):
    spec = served_spec(client)
    routes = flask_routes(app)
    assert routes - documented(spec) == set(), "routes missing from node/apispec.py"
    # /gossip is served ahead of Flask (transport.GossipEndpoint), as a peer-only endpoint.
    assert documented(spec) - routes == {(GOSSIP_PATH, "post")}


def test_a_new_route_would_be_caught(app, client):
    app.add_url_rule("/registry/undocumented", "undocumented", lambda: "", methods=["GET"])
    assert ("/registry/undocumented", "get") in flask_routes(app) - documented(served_spec(client))


def test_every_error_answer_carries_the_api_error_body(client):
    for path, item in served_spec(client)["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for status, response in op["responses"].items():
                if int(status) >= 400 and not (path == "/health" and status == "503"):
                    schema = response["content"]["application/json"]["schema"]
                    assert set(schema["required"]) == {"error", "message"}, (path, method, status)


# -- a node answers as documented ----------------------------------------------------------------


def test_the_node_serves_the_document_the_fuzzing_below_reads(client):
    assert served_spec(client) == json.loads(json.dumps(apispec.SPEC))


schema = schemathesis.openapi.from_dict(apispec.SPEC)


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_node_answers_as_documented(case, app):
    # One node per operation, kept across its examples: requests meet the state earlier ones left.
    case.call_and_validate(checks=CHECKS, app=app)


def test_sequences_of_operations_answer_as_documented(make_node):
    # register -> list / deregister -> register again..., along the description's links.
    # Each sequence meets a fresh node, so replaying one gives the same answers (hypothesis
    # refuses a generation that depends on state an earlier sequence left).
    fresh = itertools.count(1)

    class Sequences(schemathesis.openapi.from_dict(apispec.SPEC).as_state_machine()):  # type: ignore[misc]
        def setup(self):
            self.app = create_app(node=make_node(f"n{next(fresh)}:5001"))

        def get_call_kwargs(self, case):
            return {"app": self.app}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS)

    Sequences.run(settings=settings(max_examples=SEQUENCES, deadline=None, stateful_step_count=6,
                                    suppress_health_check=list(HealthCheck)))


def test_a_node_with_peers_history_and_tombstones_answers_as_documented(make_node, net, clock):
    # The fuzzing's nodes are alone and fresh: here every answer carries what a running node's does.
    n1 = make_node("n1:5001", seeds=("n2:5001", "n3:5001"))
    make_node("n2:5001")  # n3 is nowhere: its exchanges fail
    app = create_app(node=n1)
    n1.register("10.7.0.1:80", "web")
    n1.register("10.7.0.2:80", "db")
    n1.deregister("10.7.0.2:80")
    n1.deregister("10.7.0.3:80")  # never held: a tombstone under app_name ""
    n1.run_round()
    clock.advance(n1.config.ttl + 0.5)  # 10.7.0.1:80 expired, not gone
    spec = schemathesis.openapi.from_wsgi("/openapi.json", app)
    calls = [("/registry/perform_update", {}), ("/registry/perform_update", {"peer": "n3:5001"}),
             ("/registry/list", {}), ("/registry/list", {"status": "expired"}), ("/registry/entries", {}),
             ("/registry/digest", {}), ("/health", {}), ("/admin/clock", {})]
    bodies = {}
    for path, query in calls:
        case = spec[path]["GET"].Case(query=query)
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        bodies[path, tuple(query)] = response.json()
    report = bodies["/registry/perform_update", ("peer",)]
    assert report["exchanges"][0]["ok"] is False and report["exchanges"][0]["error"]
    assert any(x["ok"] and x["bytes_sent"] > 0 for x in bodies["/registry/perform_update", ()]["exchanges"])
    assert bodies["/registry/list", ("status",)]["10.7.0.1:80"]["status"] == "expired"
    assert bodies["/registry/entries", ()]["10.7.0.3:80"]["app_name"] == ""
    assert bodies["/health", ()]["last_round_age"] is not None


def test_the_admin_endpoints_off_answer_as_documented(make_node):
    app = create_app(node=make_node("n2:5001", enable_admin=False))
    spec = schemathesis.openapi.from_wsgi("/openapi.json", app)
    for method, body in (("GET", None), ("POST", {"offset": 1})):
        operation = spec["/admin/clock"][method]
        case = operation.Case(body=body) if body is not None else operation.Case()
        response = case.call()
        assert response.status_code == 403
        case.validate_response(response, checks=CHECKS)


def test_a_degraded_node_answers_as_documented(node, app):
    node.store.write_error = "disk full"  # what the store keeps after a failed write
    spec = schemathesis.openapi.from_wsgi("/openapi.json", app)
    case = spec["/health"]["GET"].Case()
    response = case.call()
    assert response.status_code == 503
    case.validate_response(response, checks=CONFORMANCE)  # a documented 503, on purpose


@pytest.mark.parametrize("path, body", [
    ("/registry/register_instance", {"address": "10.7.0.1:80", "app_name": "web"}),
    ("/registry/deregister_instance", {"address": "10.7.0.1:80"}),
])
def test_a_write_the_database_fails_is_a_documented_503(node, monkeypatch, path, body):
    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(node.store, "_persist", broken)
    app = create_app(node=node)
    app.testing = False  # answered, not raised into the test
    case = schemathesis.openapi.from_wsgi("/openapi.json", app)[path]["POST"].Case(body=body)
    response = case.call()
    assert response.status_code == 503
    assert response.json() == {"error": "store_unavailable", "message": "the write was not stored: disk I/O error"}
    case.validate_response(response, checks=CONFORMANCE)
    assert len(node.store.snapshot().entries) == 0  # nothing half-written


def test_a_refused_gossip_message_answers_as_documented(make_node):
    node = make_node("n3:5001", gossip_keys=("A" * 43 + "=",))
    spec = schemathesis.openapi.from_wsgi("/openapi.json", create_app(node=node))
    case = spec[GOSSIP_PATH]["POST"].Case(body={"v": 1, "type": "ping", "from": "n9:5000"})
    response = case.call()
    assert response.status_code == 403, json.loads(response.content)
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "/registry/list", {"GET", "HEAD", "OPTIONS"}),
    ("GET", "/registry/register_instance", {"POST", "OPTIONS"}),
    ("GET", GOSSIP_PATH, {"POST"}),
])
def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(client, method, path, allowed):
    r = client.open(path, method=method)
    assert r.status_code == 405 and r.get_json()["error"] == "method_not_allowed"
    assert set(r.headers["Allow"].split(", ")) == allowed


# -- answers the HTTP server gives before the app sees the request -------------------------------


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; return the answer's status, headers (lower-case names) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("request_bytes, status", [
    pytest.param(b"POST /registry/register_instance HTTP/1.1\r\nHost: n1\r\nContent-Length: 419430400\r\n"
                 b"Connection: close\r\n\r\n{}", 413, id="declared-over-the-server-limit"),
    pytest.param(b"POST /gossip HTTP/1.1\r\nHost: n1\r\nContent-Length: 419430400\r\nConnection: close\r\n\r\n{}",
                 413, id="gossip-declared-over-the-server-limit"),
    pytest.param(b"POST /registry/register_instance HTTP/1.1\r\nHost: n1\r\nContent-Length: 12x\r\n"
                 b"Connection: close\r\n\r\n{}", 400, id="malformed-content-length"),
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="malformed-request-line"),
])
def test_the_servers_own_refusals_carry_the_api_error_body(server, request_bytes, status):
    got, headers, body = exchange(server, request_bytes)
    assert got == status
    assert headers["content-type"] == "application/json"
    error = json.loads(body)
    assert set(error) == {"error", "message"} and error["error"] in apispec.ERROR_CODES[status]
