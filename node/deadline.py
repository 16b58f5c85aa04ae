"""A total deadline for an HTTP exchange, however slowly the peer sends its bytes.

A socket timeout bounds each read; a peer that sends one byte just within it holds a
reader forever. ``DeadlineSocket`` re-arms its timeout before every send and read
with the time left until its ``deadline`` (``time.monotonic``), and raises
``TimeoutError`` once that has passed; ``DeadlineConnection`` is an ``HTTPConnection``
whose socket is one, and which counts the bytes it writes.
"""

from __future__ import annotations

import http.client
import math
import socket
import time


class DeadlineSocket(socket.socket):
    """A socket whose every send and read ends by ``deadline`` (``time.monotonic``)."""

    deadline: float = math.inf

    @classmethod
    def wrap(cls, sock: socket.socket) -> DeadlineSocket:
        """Return a DeadlineSocket on ``sock``'s file descriptor (``sock`` is detached)."""
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("exchange deadline passed")
        self.settimeout(left)

    def sendall(self, data, flags: int = 0) -> None:
        self._arm()
        super().sendall(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        return super().recv(bufsize, flags)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return super().recv_into(buffer, nbytes, flags)


class DeadlineConnection(http.client.HTTPConnection):
    """An HTTPConnection whose requests end by ``deadline`` and that counts the bytes it writes."""

    written = 0
    deadline = math.inf

    def set_deadline(self, deadline: float) -> None:
        """Make everything this connection sends or reads from now on end by ``deadline``."""
        self.deadline = deadline
        self.timeout = max(deadline - time.monotonic(), 1e-3)  # bounds connect()
        if isinstance(self.sock, DeadlineSocket):
            self.sock.deadline = deadline

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock = DeadlineSocket.wrap(self.sock)
        self.sock.deadline = self.deadline

    def send(self, data) -> None:
        self.written += len(data)
        super().send(data)
