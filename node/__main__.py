"""Run one node: ``python -m node --port 5000 --seeds host:port,...`` (see --help).

``python -m node keygen`` prints a fresh gossip key instead.
"""

from __future__ import annotations

import logging
import resource
import signal
import sqlite3
import sys

from .app import build_node, create_app
from .config import Config, ConfigError, from_args
from .gossip import Node
from .keyring import generate_key
from .store import StoreError
from .transport import SERVER_IDENT
from .udpserver import UdpServer
from .wire import dumps

log = logging.getLogger("node")


def main(argv: list[str] | None = None) -> int:
    """Start the WSGI server and exactly one gossip loop (or run ``keygen``); return the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["keygen"]:
        print(generate_key())
        return 0
    try:
        config = from_args(argv)
    except ConfigError as exc:
        print(f"node: invalid configuration: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {config.name or config.advertised()} %(name)s: %(message)s",
    )
    try:
        node = build_node(config)
        assert config.port is not None  # Config.validate requires it
        server = make_server(node, config.host, config.port)
        datagrams = UdpServer(node, config.host, config.port, max_datagram=config.max_datagram,
                              workers=config.threads)
    except (sqlite3.Error, OSError, StoreError) as exc:
        print(f"node: cannot start: {exc}", file=sys.stderr)
        return 1
    # As PID 1 in a container SIGTERM has no default action: turn it into a clean exit.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if node.keyring.open:
        log.warning("gossip is not authenticated: no --gossip-keys, so anyone who reaches port %s can write "
                    "to the registry (make a key with `python -m node keygen`)", config.port)
    datagrams.start()
    node.start()
    log.info("serving %s on %s:%s (tcp and udp), gossip sent over %s, seeds %s, interval %ss, fanout %d, ttl %ss",
             node.address, config.host, config.port, config.transport, ",".join(config.seeds) or "-",
             config.interval, config.fanout, config.ttl)
    try:
        server.run()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        node.stop()
        datagrams.close()
        server.close()
        node.store.close()
        log.info("stopped")
    return 0


def server_body_limit(config: Config) -> int:
    """Return waitress's ``max_request_body_size`` for ``config``: one above the largest body a node takes.

    Waitress reads a whole body before the application sees it, and refuses one whose
    Content-Length reaches this size as soon as it reads the headers.
    """
    return max(config.max_body, config.max_gossip_body) + 1


FD_RESERVE = 256
"""Open files kept for what is not a client connection: connections to peers, SQLite, logs."""
CHANNEL_TIMEOUT = 15
"""Seconds a connection may stay silent (idle, or stalled in the middle of a request) before it is closed."""
CLEANUP_INTERVAL = 5
"""Seconds between the server's sweeps for silent connections."""


def raise_open_files_limit(wanted: int) -> int:
    """Raise this process's soft limit of open files toward ``wanted`` (at most the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
    return wanted if soft == resource.RLIM_INFINITY else soft


def connection_limit(config: Config) -> int:
    """Return how many client connections the server may hold: ``max_connections``, or fewer to fit open files."""
    files = raise_open_files_limit(config.max_connections + FD_RESERVE)
    limit = max(1, min(config.max_connections, files - FD_RESERVE))
    if limit < config.max_connections:
        log.warning("serving at most %d connections, not %d: the open-files limit is %d", limit,
                    config.max_connections, files)
    return limit


def make_server(node: Node, host: str, port: int):
    """Return the waitress server of ``node`` on ``host:port`` (not yet running).

    It waits with poll(), not select(), so no descriptor number is too high for it; holds
    up to ``connection_limit`` connections, the open-files limit raised to fit them; and
    closes a connection silent for ``CHANNEL_TIMEOUT`` seconds. A request is handed to a
    worker thread only once it has fully arrived, so slow or stalled clients hold a
    connection, never a thread.
    """
    import waitress  # type: ignore[import-untyped]  # no stubs in the dev dependencies

    server = waitress.create_server(create_app(node=node), host=host, port=port, threads=node.config.threads,
                                    ident=SERVER_IDENT, asyncore_use_poll=True,
                                    connection_limit=connection_limit(node.config),
                                    channel_timeout=CHANNEL_TIMEOUT, cleanup_interval=CLEANUP_INTERVAL,
                                    max_request_body_size=server_body_limit(node.config))
    server.channel_class = node_channel()
    return server


def node_channel():
    """Return waitress's connection class as the node serves it.

    * It answers waitress's own errors in the API's JSON shape. Waitress refuses some
      requests before the application sees them (a declared body over
      ``server_body_limit``, a malformed Content-Length or request line) with a
      text/plain body; this one answers them as every other error: ``{"error", "message"}``.
    * Its server loop does not poll a connection for writing while a worker thread is
      serving it (``NodeChannel.writable``).
    """
    from waitress.channel import HTTPChannel  # type: ignore[import-untyped]
    from waitress.task import ErrorTask  # type: ignore[import-untyped]

    class JsonErrorTask(ErrorTask):
        def execute(self):
            e = self.request.error
            data = dumps({"error": e.reason.lower().replace(" ", "_"), "message": e.body})
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", "application/json"))
            self.set_close_on_finish()
            self.content_length = len(data)
            self.write(data)

    class NodeChannel(HTTPChannel):
        error_task_class = JsonErrorTask

        def writable(self):
            """Leave a connection's output to the worker serving it, below the high watermark.

            A worker sends what it writes at once (waitress's ``send_bytes`` is 1), holding
            the output lock. Waitress's loop would see the buffered bytes, poll the socket as
            writable, fail to take the lock and poll again at once: a busy loop holding the
            GIL that the worker needs to finish, which on this server made two keep-alive
            clients get about 100 answers a second instead of thousands. The worker wakes the
            loop when it is done (``pull_trigger``), and the loop then sends whatever the
            socket did not take; past the high watermark the worker waits for the loop, so
            the loop writes then as before.
            """
            if (self.requests and self.total_outbufs_len < self.adj.outbuf_high_watermark
                    and not (self.will_close or self.close_when_flushed)):
                return False
            return super().writable()

    return NodeChannel


if __name__ == "__main__":
    sys.exit(main())
