"""The one place the harness talks HTTP to registry nodes.

``NodeClient`` knows each node only by a function giving its base URL, so it serves
containers, local processes and anything else with an HTTP API. Writes and admin
calls raise ``HarnessError`` on a transport failure or an error status (with the
node's own message); reads of many nodes run in parallel on a bounded thread pool
and report a node that does not answer as ``None`` (or leave it out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from . import metrics as metrics_text
from .errors import HarnessError

# Seconds a write or admin call may take.
TIMEOUT = 3.0
# Seconds a read of one node may take before it counts as not answering.
READ_TIMEOUT = 1.5
# Requests in flight at once.
MAX_WORKERS = 8


class NodeClient:
    """HTTP calls to nodes found through ``url_of(node) -> base URL``."""

    def __init__(self, url_of: Callable[[str], str], timeout: float = TIMEOUT, read_timeout: float = READ_TIMEOUT,
                 workers: int = MAX_WORKERS, session: requests.Session | None = None):
        self.url_of = url_of
        self.timeout, self.read_timeout, self.workers = timeout, read_timeout, workers
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_maxsize=workers)
        self.session.mount("http://", adapter)

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    # ------------------------------------------------------------------ one node

    def request(self, method: str, node: str, path: str, json: Any = None) -> Any:
        """Call the node's API; a transport failure or 5xx raises HarnessError, 4xx its message."""
        try:
            r = self.session.request(method, self.url_of(node) + path, json=json, timeout=self.timeout)
        except requests.RequestException as exc:
            raise HarnessError(f"{node} did not answer {method} {path}: {type(exc).__name__}") from None
        try:
            body = r.json()
        except ValueError:
            body = {"raw": r.text[:200]}
        if r.status_code >= 400:
            msg = (body.get("message") or body.get("error")) if isinstance(body, dict) else None
            raise HarnessError(f"{node} refused {method} {path}: HTTP {r.status_code}: {msg or r.text[:200]}")
        return body

    def register(self, node: str, address: str, app_name: str, last_update: int | None = None) -> dict:
        """Register ``address`` as an instance of ``app_name`` at ``node``."""
        body: dict[str, Any] = {"address": address, "app_name": app_name}
        if last_update is not None:
            body["last_update"] = last_update
        return self.request("POST", node, "/registry/register_instance", json=body)

    def deregister(self, node: str, address: str) -> dict:
        """Deregister ``address`` at ``node``."""
        return self.request("POST", node, "/registry/deregister_instance", json={"address": address})

    def perform_update(self, node: str) -> dict:
        """Make ``node`` run one gossip round now."""
        return self.request("GET", node, "/registry/perform_update")

    def set_clock(self, node: str, offset: float) -> dict:
        """Set the node's clock offset; return what the node reports afterwards."""
        self.request("POST", node, "/admin/clock", json={"offset": offset})
        return self.request("GET", node, "/admin/clock")

    def healthy(self, node: str) -> bool:
        """Whether the node answers /health with 200 right now."""
        try:
            return self.session.get(self.url_of(node) + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    # ------------------------------------------------------------------ many nodes

    def gather(self, nodes: Iterable[str], path: str, as_json: bool = True) -> dict[str, Any]:
        """GET ``path`` on the nodes in parallel: node -> body (JSON or text), None if it did not answer."""
        names = list(nodes)

        def get(n: str) -> Any:
            try:
                r = self.session.get(self.url_of(n) + path, timeout=self.read_timeout)
                if r.status_code != 200:
                    return None
                return r.json() if as_json else r.text
            except (requests.RequestException, ValueError):
                return None

        if not names:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.workers, len(names))) as pool:
            return dict(zip(names, pool.map(get, names), strict=True))

    def views(self, nodes: Iterable[str], path: str = "/registry/list") -> dict[str, dict]:
        """node -> listing (address -> entry) of the nodes that answer; ``path`` /registry/entries for all state."""
        return {n: v for n, v in self.gather(nodes, path).items() if isinstance(v, dict)}

    def digests(self, nodes: Iterable[str]) -> dict[str, tuple[str, int]]:
        """node -> (digest, entries) of the nodes that answer."""
        raw = self.gather(nodes, "/registry/digest")
        return {n: (r["digest"], int(r["entries"])) for n, r in raw.items() if isinstance(r, dict) and "digest" in r}

    def metrics(self, nodes: Iterable[str]) -> dict[str, dict[str, float]]:
        """node -> sample name -> value from /metrics, for the nodes that answer."""
        found = {}
        for n, text in self.gather(nodes, "/metrics", as_json=False).items():
            if text is None:
                continue
            try:
                found[n] = metrics_text.parse(text)
            except ValueError as exc:
                raise HarnessError(f"{n} answered /metrics with text the Prometheus parser rejects: {exc}") from None
        return found
