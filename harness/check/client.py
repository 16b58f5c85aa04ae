"""Clients that perform planned operations and say how each ended: ok, refused or indeterminate.

A *refused* operation definitely did not happen (the node answered 4xx); an
*indeterminate* one may or may not have (timeout, connection error, 5xx, a node that
is down). ``SimClient`` calls the simulator's nodes directly; ``HttpClient`` calls a
node's HTTP API the way an application would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .history import History, stamp
from .model import DEREGISTER, INDETERMINATE, OK, REFUSED
from .workload import Op

Outcome = tuple[str, "int | None", "str | None"]  # (outcome, version, error)

REQUEST_TIMEOUT = 2.0  # seconds an HTTP operation may take before it is indeterminate


class Caller(Protocol):
    def __call__(self, op: Op, last_update: int) -> Outcome: ...


def perform(op: Op, call: Caller, clock: Callable[[], float], wall: Callable[[], float],
            history: History) -> dict[str, Any]:
    """Perform ``op`` through ``call`` and record it with its invoke and complete instants."""
    invoke = clock()
    last_update = int(wall())
    outcome, version, error = call(op, last_update)
    complete = clock()
    return history.add({
        "kind": "op", "index": op.index, "client": op.client, "node": op.node, "op": op.op,
        "address": op.address, "app": op.app, "last_update": None if op.op == DEREGISTER else last_update,
        "invoke": stamp(invoke), "complete": stamp(complete), "outcome": outcome, "version": version,
        "error": error,
    })


class SimClient:
    """Operations on a ``SimCluster``: a node that is down (killed or paused) leaves them indeterminate."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster

    def __call__(self, op: Op, last_update: int) -> Outcome:
        if op.node not in self.cluster.live_nodes():
            return INDETERMINATE, None, "node down: no answer"
        try:
            if op.op == DEREGISTER:
                reply = self.cluster.deregister(op.node, op.address)
            else:
                reply = self.cluster.register(op.node, op.address, op.app, last_update)
        except ValueError as exc:  # the node refused the write (e.g. versions exhausted)
            return REFUSED, None, str(exc)
        return OK, reply.get("version"), None


class HttpClient:
    """Operations over HTTP; ``url_of(node)`` gives a node's base URL."""

    def __init__(self, url_of: Callable[[str], str], timeout: float = REQUEST_TIMEOUT) -> None:
        import requests  # noqa: PLC0415 - the simulator path never loads requests

        self.url_of, self.timeout = url_of, timeout
        self.session = requests.Session()
        self._errors = requests.RequestException

    def __call__(self, op: Op, last_update: int) -> Outcome:
        body: dict[str, Any] = {"address": op.address}
        if op.op == DEREGISTER:
            path = "/registry/deregister_instance"
        else:
            path = "/registry/register_instance"
            body.update(app_name=op.app, last_update=last_update)
        try:
            r = self.session.post(self.url_of(op.node) + path, json=body, timeout=self.timeout)
        except self._errors as exc:
            return INDETERMINATE, None, type(exc).__name__
        return classify(r.status_code, _json(r))

    def close(self) -> None:
        self.session.close()


def _json(response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"raw": response.text[:200]}


def classify(status: int, body: Any) -> Outcome:
    """The outcome of an HTTP answer: 2xx ok (with its version), 4xx refused, anything else indeterminate."""
    message = body.get("message") or body.get("error") if isinstance(body, dict) else None
    if 200 <= status < 300 and isinstance(body, dict):
        return OK, body.get("version"), None
    if 400 <= status < 500:
        return REFUSED, None, f"HTTP {status}: {message}"
    return INDETERMINATE, None, f"HTTP {status}: {message}"
