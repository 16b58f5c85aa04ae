#!/usr/bin/env python3
"""sd-gateway: forward TCP ports to named targets, so the host reaches nodes on a network it is not on.

Usage: sd-gateway PORT=HOST:PORT [PORT=HOST:PORT ...]

One listener per mapping on 0.0.0.0:PORT. Every accepted connection opens a new one
to HOST:PORT, resolved at that moment (a restarted node's new address is found), and
bytes are copied both ways until both sides have closed. A target that cannot be
reached closes the client's connection at once, as a refused connect would. The
harness runs it in a container on a cluster's swarm overlay network and publishes
its ports on 127.0.0.1 only. Standard library only.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

log = logging.getLogger("sd-gateway")
# Bytes read at once from either side.
CHUNK = 65536
# Seconds allowed to connect to a target.
CONNECT_TIMEOUT = 5.0


def parse(args: list[str]) -> dict[int, tuple[str, int]]:
    """``["7001=n1:5000"]`` -> ``{7001: ("n1", 5000)}``; SystemExit on a malformed mapping."""
    mappings = {}
    for arg in args:
        try:
            listen, _, target = arg.partition("=")
            host, _, port = target.rpartition(":")
            if not host:
                raise ValueError(arg)
            mappings[int(listen)] = (host, int(port))
        except ValueError:
            raise SystemExit(f"sd-gateway: bad mapping {arg!r}, expected PORT=HOST:PORT") from None
    if not mappings:
        raise SystemExit(__doc__.split("\n\n")[1])
    return mappings


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until EOF, then half-close ``writer``."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


def handler(host: str, port: int):
    """The connection handler forwarding to ``host:port``."""

    async def forward(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            target_r, target_w = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except (TimeoutError, OSError) as exc:
            log.debug("cannot reach %s:%s: %s", host, port, exc)
            client_w.close()
            return
        try:
            await asyncio.gather(pipe(client_r, target_w), pipe(target_r, client_w))
        finally:
            for w in (client_w, target_w):
                w.close()

    return forward


async def serve(mappings: dict[int, tuple[str, int]]) -> None:
    """Listen on every mapped port until SIGTERM or SIGINT."""
    servers = [await asyncio.start_server(handler(*target), "0.0.0.0", listen, reuse_address=True)
               for listen, target in mappings.items()]
    log.info("forwarding %s", ", ".join(f"{p}->{h}:{t}" for p, (h, t) in sorted(mappings.items())))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sd-gateway %(message)s")
    asyncio.run(serve(parse(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
