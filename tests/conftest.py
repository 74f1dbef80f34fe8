"""Shared test helpers: condition waits with deadlines (tests never sleep a fixed time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass.

    Returns the truthy value. Raises AssertionError naming ``what`` on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def wait_until(predicate: Callable[[], object], deadline_s: float, what: str = "") -> None:
    """Async twin of :func:`wait_for`: poll ``predicate`` under a trio deadline."""
    with trio.move_on_after(deadline_s) as scope:
        while not predicate():  # noqa: ASYNC110 - polling state owned by other tasks
            await trio.sleep(0.05)
    if scope.cancelled_caught:
        raise AssertionError(f"timed out after {deadline_s}s waiting for {what or predicate}")


pytest_plugins = ["tests.s3servers"]
