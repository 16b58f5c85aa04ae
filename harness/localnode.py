"""Real ``python -m node`` processes on 127.0.0.1, for benchmarks and tests.

``NodeProcess`` starts one node on a free loopback port with its own SQLite file and
log file, waits until it answers ``/health`` (``NodeStartError`` with the log tail if it
does not), and stops it with SIGTERM, then SIGKILL. ``cluster_of`` starts several, each
seeded with the ones before it. Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

from .errors import NodeStartError
from .wait import wait_until

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]  # the checkout: node/ is importable from here
READY_TIMEOUT = 15.0  # seconds a node gets to answer /health
LOG_TAIL = 2000  # characters of the log an error carries


def free_port() -> int:
    """Return a port number on 127.0.0.1 free right now for TCP and UDP both (a node serves both)."""
    while True:
        with socket.socket() as s, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            try:
                u.bind((HOST, port))
            except OSError:
                continue
            return port


def answers_health(url: str, timeout: float = 1.0) -> bool:
    """Return whether ``url``/health answers 200."""
    try:
        return requests.get(url + "/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


class NodeProcess:
    """One node process on 127.0.0.1 with its own port, SQLite file and log; a context manager.

    ``flags`` are passed to ``python -m node`` after ``--port``, ``--db`` and ``--name``.
    ``db`` and ``log`` default to files in a temporary folder removed by ``close()``.
    ``command`` replaces ``[python, -m, node]`` (e.g. ``[python, -c, script]`` that wraps
    the node's own entry point); it must accept the same flags.
    """

    def __init__(self, *flags: str, port: int | None = None, db: Path | str | None = None,
                 log: Path | str | None = None, name: str | None = None, seeds: Sequence[str] = (),
                 command: Sequence[str] | None = None, ready_timeout: float = READY_TIMEOUT) -> None:
        self.port = port if port is not None else free_port()
        self.name = name or f"node-{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="sd-node-") if db is None or log is None else None
        folder = Path(self._tmp.name) if self._tmp else Path()
        self.db = Path(db) if db is not None else folder / f"{self.name}.db"
        self.log = Path(log) if log is not None else folder / f"{self.name}.log"
        self.flags, self.seeds = list(flags), list(seeds)
        self.command = list(command) if command is not None else [sys.executable, "-m", "node"]
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        """host:port of the node, as peers and the registry name it."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise NodeStartError(f"{self.name} was never started")
        return self.proc.pid

    def argv(self) -> list[str]:
        """The command line the node runs with."""
        args = [*self.command, "--port", str(self.port), "--db", str(self.db), "--name", self.name, *self.flags]
        return args + (["--seeds", ",".join(self.seeds)] if self.seeds else [])

    def start(self, wait: bool = True) -> NodeProcess:
        """Start the process (appending to its log); with ``wait``, return once it answers /health."""
        with open(self.log, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.argv(), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if wait:
            self.wait_ready()
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the node answers /health; raise ``NodeStartError`` with its log if it exits or times out."""
        timeout = self.ready_timeout if timeout is None else timeout

        def state() -> str:
            if not self.running():
                return "exited"
            return "ready" if answers_health(self.url, timeout=0.5) else "starting"

        outcome = wait_until(state, passed=lambda s: s != "starting", timeout=timeout, interval=0.1)
        if outcome.last != "ready":
            code = self.proc.returncode if self.proc is not None else None
            what = (f"exited with code {code}" if outcome.last == "exited"
                    else f"did not answer /health within {timeout:g}s")
            self.stop()
            raise NodeStartError(f"{self.name} on {self.address} {what}", {self.name: self.log_tail()})

    def log_tail(self, chars: int = LOG_TAIL) -> str:
        """The last ``chars`` characters of the node's log."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get(self, path: str, timeout: float = 2.0):
        """GET ``path`` on the node and return the decoded JSON body."""
        return requests.get(self.url + path, timeout=timeout).json()

    def kill(self) -> None:
        """SIGKILL the node and reap it; its SQLite file stays for the next ``start``."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the node, SIGKILL it if it has not exited after ``timeout`` seconds."""
        if self.proc is not None:
            stop_processes([self.proc], grace=timeout)

    def close(self) -> None:
        """Stop the node and remove its temporary folder, if it made one."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> NodeProcess:
        return self if self.running() else self.start()

    def __exit__(self, *exc) -> None:
        self.close()


def chain(index: int, addresses: Sequence[str]) -> list[str]:
    """Seeds of node ``index`` in a chain: the node before it (none for the first)."""
    return [addresses[index - 1]] if index else []


def cluster_of(n: int, *flags: str, folder: Path | str, ports: Sequence[int] | None = None,
               seeds: Callable[[int, Sequence[str]], Sequence[str]] = chain, prefix: str = "n",
               wait: bool = True) -> list[NodeProcess]:
    """Start ``n`` nodes named ``<prefix>1..`` with files in ``folder``; stop them all if one fails.

    ``seeds(i, addresses)`` gives node ``i``'s seeds (default: the node before it). With
    ``wait`` every node answers /health on return; otherwise call ``wait_ready`` on each.
    """
    ports = list(ports) if ports is not None else [free_port() for _ in range(n)]
    addresses = [f"{HOST}:{p}" for p in ports]
    folder = Path(folder)
    procs = [NodeProcess(*flags, port=p, name=f"{prefix}{i + 1}", db=folder / f"{prefix}{i + 1}.db",
                         log=folder / f"{prefix}{i + 1}.log", seeds=seeds(i, addresses))
             for i, p in enumerate(ports)]
    try:
        for p in procs:
            p.start(wait=False)
        if wait:
            for p in procs:
                p.wait_ready()
    except BaseException:
        stop_all(procs)
        raise
    return procs


def stop_all(procs: Sequence[NodeProcess]) -> None:
    """Stop every node: SIGTERM to all first, then SIGKILL whichever still runs after the grace."""
    stop_processes([p.proc for p in procs if p.proc is not None])


def stop_processes(procs: Sequence[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM every process, wait up to ``grace`` seconds in all, then SIGKILL the ones still alive."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
