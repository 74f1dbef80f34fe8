"""How transfers and store calls ride out a storage outage: one retry policy, two loops.

``RetryPolicy`` says how often and how patiently to retry. ``storage.transfer`` uses it
for presigned-URL transfers (connection errors, 429 and 5xx); ``call_store`` uses it for
the owner's own blocking ``ObjectStore`` calls, retrying only failures the store marked
``transient`` (connection errors, timeouts, 5xx, SlowDown). The default patience,
0.25 + 0.5 + 1 + 2 + 4 s between six attempts, rides out an S3 server restart of several
seconds; a failure that outlasts it is final.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import trio

from storage.errors import StoreOperationFailed

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("distro_train.storage")


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
