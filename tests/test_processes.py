"""Real `python -m node` processes on 127.0.0.1: convergence, kill -9 and restart."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from harness.wait import wait_until

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """One node process with its own port and SQLite file."""

    def __init__(self, name: str, port: int, db: Path, seeds: list[str], log: Path) -> None:
        self.name, self.port, self.db, self.seeds, self.log = name, port, db, seeds, log
        self.url = f"http://127.0.0.1:{port}"
        self.address = f"127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "node", "--preset", "local", "--port", str(self.port),
                "--db", str(self.db), "--interval", "0.1", "--name", self.name]
        if self.seeds:
            args += ["--seeds", ",".join(self.seeds)]
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
        out = wait_until(self._healthy, timeout=15, interval=0.1)
        assert out.ok, f"{self.name} did not become healthy:\n{self.log.read_text()[-2000:]}"

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def get(self, path: str):
        return requests.get(self.url + path, timeout=2).json()


@pytest.fixture
def chain(tmp_path):
    """Three nodes seeded in a chain: n1 <- n2 <- n3."""
    ports = [free_port() for _ in range(3)]
    procs = []
    for i, port in enumerate(ports):
        seeds = [f"127.0.0.1:{ports[i - 1]}"] if i else []
        procs.append(Proc(f"n{i + 1}", port, tmp_path / f"n{i + 1}.db", seeds, tmp_path / f"n{i + 1}.log"))
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.stop()


def converged(procs, present=(), absent=()) -> bool:
    try:
        digests = {p.get("/registry/digest")["digest"] for p in procs}
        views = [p.get("/registry/list") for p in procs]
    except requests.RequestException:
        return False
    return (len(digests) == 1 and all(a in v for v in views for a in present)
            and not any(a in v for v in views for a in absent))


def test_chain_converges_and_survives_kill9(chain):
    n1, n2, n3 = chain
    r = requests.post(n3.url + "/registry/register_instance", json={"address": "10.2.0.1:8080", "app_name": "api"},
                      timeout=2)
    assert r.status_code == 201
    assert wait_until(lambda: converged(chain, ["10.2.0.1:8080", n1.address, n3.address]), timeout=10).ok
    assert n1.get("/registry/list")["10.2.0.1:8080"]["app_name"] == "api"

    n2.kill9()
    requests.post(n1.url + "/registry/register_instance", json={"address": "10.2.0.2:8080", "app_name": "db"},
                  timeout=2)
    requests.post(n3.url + "/registry/deregister_instance", json={"address": "10.2.0.1:8080"}, timeout=2)
    assert wait_until(lambda: converged([n1, n3], ["10.2.0.2:8080"], ["10.2.0.1:8080"]), timeout=10).ok

    # Its SQLite file still holds what it had acknowledged before kill -9...
    with sqlite3.connect(n2.db) as db:
        rows = dict(db.execute("SELECT address, app_name FROM entry WHERE deleted = 0"))
    assert rows.get("10.2.0.1:8080") == "api" and n1.address in rows and n3.address in rows
    n2.start()
    # ...and once restarted on that file it catches up on the registration and the deletion it missed.
    assert wait_until(lambda: converged(chain, ["10.2.0.2:8080"], ["10.2.0.1:8080"]), timeout=10).ok
