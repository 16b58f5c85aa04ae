"""Run one node: ``python -m node --port 5000 --seeds host:port,...`` (see --help).

``python -m node keygen`` prints a fresh gossip key instead.
"""

from __future__ import annotations

import logging
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


def make_server(node: Node, host: str, port: int):
    """Return the waitress server of ``node`` on ``host:port`` (not yet running)."""
    import waitress  # type: ignore[import-untyped]  # no stubs in the dev dependencies

    return waitress.create_server(create_app(node=node), host=host, port=port, threads=node.config.threads,
                                  ident=SERVER_IDENT, connection_limit=1000,
                                  max_request_body_size=server_body_limit(node.config))


if __name__ == "__main__":
    sys.exit(main())
