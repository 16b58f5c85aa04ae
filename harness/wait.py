"""The one wait helper: poll a check until it passes, keep what it last saw."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import tenacity
from tenacity.stop import stop_base

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """Result of waiting: whether the check passed, what it last returned, how long it took."""

    ok: bool
    last: T | None
    error: BaseException | None
    attempts: int
    elapsed: float


def wait_until(
    check: Callable[[], T],
    passed: Callable[[T], bool] = bool,
    timeout: float = 30.0,
    interval: float = 0.25,
    retry_on: tuple[type[BaseException], ...] = (),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome[T]:
    """Call ``check`` every ``interval`` s until ``passed(result)`` or ``timeout`` s have gone.

    Exceptions of the types in ``retry_on`` count as a failed attempt (kept in
    ``Outcome.error``); others propagate. Never raises on timeout: the caller turns
    the last observation into its own named error.
    """
    start = clock()
    state: dict = {"last": None, "error": None, "attempts": 0}

    def attempt():
        state["attempts"] += 1
        try:
            result = check()
        except retry_on as exc:  # noqa: B030 - tuple of types given by the caller
            state["error"] = exc
            return False
        state["last"], state["error"] = result, None
        return passed(result)

    retrying = tenacity.Retrying(
        stop=_Elapsed(clock, start, timeout),
        wait=tenacity.wait_fixed(interval),
        retry=tenacity.retry_if_result(lambda ok: not ok),
        sleep=sleep,
        retry_error_callback=lambda _state: False,
    )
    ok = retrying(attempt)
    return Outcome(ok=bool(ok), last=state["last"], error=state["error"],
                   attempts=state["attempts"], elapsed=clock() - start)


class _Elapsed(stop_base):
    """Stop once ``timeout`` seconds have passed on ``clock`` since ``start``.

    The caller's clock, not tenacity's own, so a fake clock with a no-op sleep bounds the loop.
    """

    def __init__(self, clock: Callable[[], float], start: float, timeout: float) -> None:
        self.clock, self.start, self.timeout = clock, start, timeout

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() - self.start >= self.timeout
