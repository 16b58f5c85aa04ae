"""The node's waitress connection class (``node.__main__.node_channel``) on a real socket.

Its loop leaves a connection's output to the worker serving it; these tests check that
nothing is held back by that: a body the socket cannot take at once, below and above
waitress's high watermark, reaches a client that reads it slowly, whole and in order, and
the next request on the same connection is answered after it.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import waitress  # type: ignore[import-untyped]

from node.__main__ import node_channel

from .conftest import serving

HIGH_WATERMARK = 8 << 20  # half waitress's 16 MiB; still more than loopback's socket buffers take at once


def body_of(size: int) -> bytes:
    """Return ``size`` bytes that show any loss or reordering (a counter, not one repeated byte)."""
    block = b"".join(i.to_bytes(4, "big") for i in range(1 << 14))  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def big_server():
    """A waitress server with the node's channel class answering GET /<size> with ``body_of(size)``.

    The body is written in 1 MiB pieces, so a worker that has buffered past the high
    watermark waits for the server's loop to send some before it writes the next.
    """
    def app(environ, start_response):
        data = body_of(int(environ["PATH_INFO"].strip("/")))
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
        return [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]

    srv = waitress.create_server(app, host="127.0.0.1", port=0, threads=2, asyncore_use_poll=True,
                                 outbuf_high_watermark=HIGH_WATERMARK, clear_untrusted_proxy_headers=True)
    srv.channel_class = node_channel()
    with serving(srv) as port:
        yield port


def read_response(s: socket.socket, wait: float) -> bytes:
    """Read one response with a Content-Length, ``wait`` seconds after it was asked for."""
    time.sleep(wait)  # meanwhile the server fills the socket's buffers and keeps the rest
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    chunks = [body]
    received = len(body)
    while received < length:
        chunk = s.recv(min(1 << 20, length - received))
        assert chunk, f"connection closed after {received} of {length} bytes"
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("size", [HIGH_WATERMARK // 2 + 12345, 3 * HIGH_WATERMARK + 7],
                         ids=["below-the-high-watermark", "above-the-high-watermark"])
def test_a_body_a_slow_client_cannot_take_at_once_arrives_whole(big_server, size):
    with socket.create_connection(("127.0.0.1", big_server), timeout=10) as s:
        for _ in range(2):  # the same keep-alive connection goes on after the body
            s.sendall(f"GET /{size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            assert read_response(s, wait=0.3) == body_of(size)


def test_many_keep_alive_clients_at_once_are_each_answered_in_order(big_server):
    sizes = [100 + 1000 * i for i in range(8)]
    results: dict[int, list[bool]] = {}

    def client(i: int) -> None:
        with socket.create_connection(("127.0.0.1", big_server), timeout=10) as s:
            results[i] = []
            for j in range(20):
                size = sizes[(i + j) % len(sizes)]
                s.sendall(f"GET /{size} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
                results[i].append(read_response(s, wait=0) == body_of(size))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: [True] * 20 for i in range(8)}
