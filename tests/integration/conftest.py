"""Fixtures for tests against real containers: Docker check, image, shared clusters.

Without a usable Docker these tests skip with the reason; under ``CI=true`` they fail
instead, so CI can never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import docker
import pytest

from harness import Cluster

from .params import FANOUT, INTERVAL

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("SD_IMAGE", "sd-node:latest")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unusable(reason: str):
    if IN_CI:
        pytest.exit(f"CI=true but the Docker integration tests cannot run: {reason}", returncode=3)
    pytest.skip(f"Docker integration tests skipped: {reason}", allow_module_level=True)


@pytest.fixture(scope="session")
def docker_client():
    """A Docker client; skip (fail under CI) when the engine cannot be reached."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no usable Docker"
        _unusable(f"no usable Docker engine ({type(exc).__name__}: {exc})")
    return client


@pytest.fixture(scope="session")
def node_image(docker_client) -> str:
    """The node image, built (from the cache when nothing changed) when missing."""
    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        result = subprocess.run([str(ROOT / "docker" / "build-image.sh"), IMAGE], cwd=ROOT)
        if result.returncode != 0:
            _unusable(f"image {IMAGE} is missing and docker/build-image.sh failed")
    return IMAGE


@pytest.fixture(scope="session")
def run_tag() -> str:
    """Unique per session; ``SD_RUN_TAG_PREFIX`` (lowercase letters and digits) says whose run it is."""
    return os.environ.get("SD_RUN_TAG_PREFIX", "") + uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def cluster5(docker_client, node_image, run_tag):
    """Five nodes n1..n5 shared by a module's tests; each test leaves it healed and running."""
    with Cluster(nodes=5, name=f"it5-{run_tag}", image=node_image, client=docker_client,
                 interval=INTERVAL, fanout=FANOUT, timeline=False) as c:
        c.wait_converged(timeout=30)
        yield c


@pytest.fixture
def healthy5(cluster5):
    """The shared five-node cluster, restored to all-running and healed after the test."""
    yield cluster5
    cluster5.heal()
    for n in cluster5.nodes:
        state = cluster5.state(n)
        if state == "paused":
            cluster5.unpause(n)
        elif state != "running":
            cluster5.start(n)
    for n in cluster5.nodes:
        cluster5.skew(n, 0)


@pytest.fixture(scope="session")
def docker_compose_file():
    """pytest-docker: the project's compose file."""
    return str(ROOT / "docker" / "compose.yaml")


@pytest.fixture(scope="session")
def docker_compose_command():
    """pytest-docker: Compose v2 when the docker CLI has it, else docker-compose v1."""
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    if v2:
        return "docker compose"
    if shutil.which("docker-compose"):
        return "docker-compose"
    _unusable("neither `docker compose` nor `docker-compose` is installed")


@pytest.fixture(scope="session")
def docker_compose_project_name(run_tag):
    return f"sdit{run_tag}"


@pytest.fixture(scope="session")
def docker_setup(node_image):
    """pytest-docker: start the compose cluster from the local image (never build or pull)."""
    return ["up -d"]


@pytest.fixture(scope="session")
def docker_cleanup():
    return ["down -v"]
