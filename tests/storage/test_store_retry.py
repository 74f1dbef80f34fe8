"""storage.retry.call_store: transient store failures are retried, final ones are not.

The backoff waits run on trio's autojump clock, so these take no real time.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from trio.testing import MockClock

from storage.errors import ObjectNotFound, StoreOperationFailed
from storage.retry import DEFAULT_RETRY, call_store


def flaky(failures: int, transient: bool = True) -> tuple[list[int], Callable[[str], str]]:
    calls: list[int] = []

    def put(key: str) -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise StoreOperationFailed(
                "put", key, "EndpointConnectionError", "down", transient=transient
            )
        return f"stored {key}"

    return calls, put


async def test_transient_failures_are_retried(
    autojump_clock: MockClock,
) -> None:
    calls, put = flaky(DEFAULT_RETRY.attempts - 1)
    assert await call_store(put, "k") == "stored k"
    assert len(calls) == DEFAULT_RETRY.attempts


async def test_an_outage_longer_than_the_policy_is_final(autojump_clock: MockClock) -> None:
    calls, put = flaky(DEFAULT_RETRY.attempts)
    with pytest.raises(StoreOperationFailed) as err:
        await call_store(put, "k")
    assert err.value.transient and len(calls) == DEFAULT_RETRY.attempts


async def test_final_failures_are_not_retried(autojump_clock: MockClock) -> None:
    calls, put = flaky(1, transient=False)
    with pytest.raises(StoreOperationFailed):
        await call_store(put, "k")
    assert len(calls) == 1

    def get(key: str) -> bytes:
        calls.append(1)
        raise ObjectNotFound("get", key)

    with pytest.raises(ObjectNotFound):
        await call_store(get, "k")
    assert len(calls) == 2
