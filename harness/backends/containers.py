"""What the Docker backends share: Docker errors as harness errors, and the node operations on a container.

The engine backend runs each node as one container; the swarm backend runs each as a
service whose current task has one container. Either way a node's process faults, its
commands and its log go through that container, found by the backend's ``_container``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from typing import Any

import docker
import docker.errors
import requests

from ..errors import DockerUnavailable, HarnessError, NodeNotFound
from . import Node


def docker_errors(fn):
    """Turn Docker SDK exceptions escaping ``fn`` into harness errors."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HarnessError:
            raise
        except docker.errors.APIError as exc:
            raise HarnessError(f"docker: {getattr(exc, 'explanation', None) or exc}") from exc
        except (docker.errors.DockerException, requests.ConnectionError) as exc:
            raise DockerUnavailable(unreachable(exc)) from exc

    return wrapper


def unreachable(exc: Exception) -> str:
    """One line saying the daemon is unreachable, with the OS reason when there is one."""
    text = str(exc)
    m = re.search(r"\[Errno -?\d+\] [^\"')]+", text)
    reason = m.group(0) if m else text.splitlines()[0][:160] if text else type(exc).__name__
    where = os.environ.get("DOCKER_HOST", "the default socket")
    return f"cannot reach the Docker daemon at {where}: {reason}"


def connect(client=None):
    """Return a Docker client that answers ping, or raise DockerUnavailable."""
    try:
        client = client or docker.from_env()  # type: ignore[attr-defined]  # the SDK is untyped
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise DockerUnavailable(unreachable(exc)) from exc
    return client


class ContainerNodeOps:
    """Node operations on the node's container, the one ``_container(node)`` returns.

    A backend supplies ``_container``, which raises NodeNotFound when the node has no container
    (any more); what starting and restarting a node means stays the backend's own.
    """

    _client: Any = None

    @property
    def client(self):
        """The Docker client (the swarm manager's, for Swarm), connected and pinged on first use."""
        if self._client is None:
            self._client = connect()
        return self._client

    def _container(self, node: Node) -> Any:
        """The Docker container of ``node``, or NodeNotFound."""
        raise NotImplementedError

    @docker_errors
    def exec(self, node: Node, argv: Sequence[str]) -> tuple[int, str]:
        """Run ``argv`` as root inside the node's container (its network namespace); (exit code, output)."""
        result = self._container(node).exec_run(list(argv), user="root")
        return result.exit_code, (result.output or b"").decode("utf-8", "replace")

    @docker_errors
    def kill(self, node: Node, signal: str = "SIGKILL") -> None:
        """Send ``signal`` to the main process of the node's container."""
        self._container(node).kill(signal=signal)

    @docker_errors
    def stop(self, node: Node, timeout: int = 10) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s."""
        self._container(node).stop(timeout=timeout)

    @docker_errors
    def pause(self, node: Node) -> str:
        """``docker pause`` (cgroup freezer); SIGSTOP to PID 1 where the runtime cannot freeze."""
        container = self._container(node)
        try:
            container.pause()
            return "freezer"
        except docker.errors.APIError as exc:
            if "freeze" not in str(exc).lower():  # seen: "unable to freeze"
                raise
        container.kill(signal="SIGSTOP")
        return "sigstop"

    @docker_errors
    def unpause(self, node: Node) -> None:
        """``docker unpause`` a frozen container, SIGCONT a stopped process."""
        container = self._container(node)
        if container.status == "paused":
            container.unpause()
        else:
            container.kill(signal="SIGCONT")

    @docker_errors
    def logs(self, node: Node, tail: int) -> str:
        """The last ``tail`` lines of the node's container log ("(container gone)" when there is none)."""
        try:
            return self._container(node).logs(tail=tail).decode("utf-8", "replace")
        except (NodeNotFound, docker.errors.NotFound):
            return "(container gone)"
