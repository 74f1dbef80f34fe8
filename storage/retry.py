"""How transfers and store calls ride out a storage outage: one retry policy, two loops.

``RetryPolicy`` says how often and how patiently to retry. ``retry_transfer`` uses it
for ``storage.transfer``'s presigned-URL transfers (connection errors, 429 and 5xx,
judged by ``check_status``); ``call_store`` uses it for
the owner's own blocking ``ObjectStore`` calls, retrying only failures the store marked
``transient`` (connection errors, timeouts, 5xx, SlowDown). The default patience,
0.25 + 0.5 + 1 + 2 + 4 s between six attempts, rides out an S3 server restart of several
seconds; a failure that outlasts it is final.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import httpx
import trio

from storage.errors import (
    ObjectMissing,
    StoreOperationFailed,
    TransferFailed,
    UrlForbidden,
    UrlRejected,
    redact_url,
)
from storage.httpio import ForbiddenAddress

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("distro_train.storage")
_transfer_log = logging.getLogger("distro_train.transfer")
_REJECTED = frozenset({400, 401, 403})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry retryable failures.

    Attributes:
        attempts: total attempts, the first included (1 = never retry).
        base_delay_s: wait before the second attempt.
        multiplier: each further wait is this many times longer...
        max_delay_s: ...up to this cap.
    """

    attempts: int = 6
    base_delay_s: float = 0.25
    multiplier: float = 2.0
    max_delay_s: float = 4.0

    def delay_s(self, failed_attempts: int) -> float:
        """Return the wait after ``failed_attempts`` (>= 1) failures."""
        return min(self.max_delay_s, self.base_delay_s * self.multiplier ** (failed_attempts - 1))


DEFAULT_RETRY = RetryPolicy()


class Retryable(Exception):
    """A transfer attempt failed in a way worth retrying (``retry_transfer`` catches it)."""

    def __init__(self, status: int | None, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)



def check_status(url: str, status: int) -> None:
    """Raise the error matching a non-2xx ``status`` of a presigned transfer of ``url``.

    Raises:
        UrlRejected: 400/401/403.
        ObjectMissing: 404.
        Retryable: 429 or 5xx.
        TransferFailed: any other non-2xx status.
    """
    if 200 <= status < 300:
        return
    if status in _REJECTED:
        raise UrlRejected(url, status)
    if status == 404:
        raise ObjectMissing(url, status)
    if status == 429 or status >= 500:
        raise Retryable(status, f"HTTP {status}")
    raise TransferFailed(url, 1, status, f"unexpected HTTP {status}")


async def retry_transfer(url: str, retry: RetryPolicy, attempt: Callable[[], Awaitable[T]]) -> T:
    """Run the transfer ``attempt`` of ``url`` until it succeeds or fails finally.

    ``retry`` says how often and how patiently. ``Retryable`` and httpx transport
    errors are retried, each logged; any other error of ``attempt`` is final and
    passes through unchanged.

    Raises:
        UrlForbidden: the client's address policy refused the URL's host.
        TransferFailed: an unusable URL, or retryable failures exhausted the attempts.
    """
    failures = 0
    while True:
        try:
            return await attempt()
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise TransferFailed(url, failures + 1, None, f"unusable URL: {exc}") from exc
        except ForbiddenAddress as exc:
            raise UrlForbidden(url, exc.host, exc.address) from None
        except Retryable as exc:
            status, reason = exc.status, exc.reason
        except httpx.TransportError as exc:
            status, reason = None, f"{type(exc).__name__}: {exc}"
        failures += 1
        if failures >= retry.attempts:
            raise TransferFailed(url, failures, status, reason)
        delay = retry.delay_s(failures)
        _transfer_log.info(
            "transfer of %s failed (%s); retry %d in %.2fs",
            redact_url(url),
            reason,
            failures,
            delay,
        )
        await trio.sleep(delay)


async def call_store(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the blocking store call ``fn(*args, **kwargs)`` in a thread, retrying outages.

    Only ``StoreOperationFailed`` errors marked ``transient`` are retried, with
    ``DEFAULT_RETRY``; each retry is logged. Cancellation interrupts the wait between
    attempts (a call already running in its thread finishes in the background).

    Raises:
        StoreOperationFailed: a final failure, or a transient one that outlasted the policy.
    """
    failures = 0
    while True:
        try:
            return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except StoreOperationFailed as exc:
            failures += 1
            if not exc.transient or failures >= DEFAULT_RETRY.attempts:
                raise
            delay = DEFAULT_RETRY.delay_s(failures)
            log.info(
                "store %s of %r failed (%s); retry %d in %.2fs",
                exc.op,
                exc.key,
                exc.code,
                failures,
                delay,
            )
        await trio.sleep(delay)
