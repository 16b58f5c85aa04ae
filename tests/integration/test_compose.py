"""The compose file: three nodes that `docker compose up` / `docker-compose up` start converge."""

from __future__ import annotations

import requests

from harness.wait import wait_until

pytestmark = __import__("pytest").mark.integration

SERVICES = ("node1", "node2", "node3")


def test_compose_cluster_converges_on_a_registration(docker_services):
    urls = {s: f"http://127.0.0.1:{docker_services.port_for(s, 5000)}" for s in SERVICES}

    def healthy() -> bool:
        try:
            return all(requests.get(u + "/health", timeout=1).ok for u in urls.values())
        except requests.RequestException:
            return False

    docker_services.wait_until_responsive(check=healthy, timeout=60, pause=0.5)
    r = requests.post(urls["node3"] + "/registry/register_instance",
                      json={"address": "10.8.0.1:8080", "app_name": "compose-app"}, timeout=2)
    assert r.status_code == 201

    def converged():
        views = {s: requests.get(u + "/registry/list", timeout=2).json() for s, u in urls.items()}
        digests = {requests.get(u + "/registry/digest", timeout=2).json()["digest"] for u in urls.values()}
        return views if len(digests) == 1 and all("10.8.0.1:8080" in v for v in views.values()) else None

    outcome = wait_until(converged, timeout=15, retry_on=(requests.RequestException,))
    assert outcome.ok, f"compose nodes did not converge; last views: {outcome.last}"
    view = outcome.last["node1"]
    assert view["10.8.0.1:8080"]["app_name"] == "compose-app"
    assert {"node1:5000", "node2:5000", "node3:5000"} <= set(view)
