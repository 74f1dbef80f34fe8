"""Upload targets accept only the agreed size, on both real servers.

SeaweedFS (like AWS S3) enforces a presigned POST policy's ``content-length-range``
itself. nanio has no POST uploads, so its target is a presigned PUT and the owner's
``check_upload`` deletes an oversize object before anything uses it.
"""

from __future__ import annotations

import pytest

from storage.errors import ObjectNotFound, TooLarge, UrlRejected
from storage.retry import RetryPolicy
from storage.s3 import S3Store
from storage.transfer import upload

CT = "application/x-update"
LIMIT = 1000


async def _send(store: S3Store, key: str, size: int) -> None:
    target = store.presign_upload(key, max_bytes=LIMIT, expires_s=60, content_type=CT)
    fields = dict(target.fields) or None
    await upload(target.url, b"u" * size, content_type=CT, fields=fields, retry=RetryPolicy(1))


async def test_an_upload_within_the_limit_is_stored(any_store: S3Store) -> None:
    await _send(any_store, "u/ok.bin", LIMIT)
    assert any_store.check_upload("u/ok.bin", LIMIT).size == LIMIT
    assert any_store.head("u/ok.bin").content_type == CT


async def test_an_oversize_upload_never_reaches_its_user(any_store: S3Store) -> None:
    enforced = any_store.presign_upload("x", max_bytes=LIMIT, expires_s=60).size_enforced
    assert enforced == (any_store.config.kind != "embedded")
    if enforced:
        with pytest.raises(UrlRejected) as info:
            await _send(any_store, "u/big.bin", LIMIT + 1)
        assert info.value.status == 400
        assert not any_store.exists("u/big.bin")
    else:
        await _send(any_store, "u/big.bin", LIMIT + 1)
        with pytest.raises(TooLarge):
            any_store.check_upload("u/big.bin", LIMIT)
        assert not any_store.exists("u/big.bin"), "the oversize object is deleted"
    with pytest.raises(ObjectNotFound):
        any_store.check_upload("u/never.bin", LIMIT)


async def test_a_post_target_is_bound_to_its_key_and_content_type(seaweed_store: S3Store) -> None:
    target = seaweed_store.presign_upload("u/a.bin", max_bytes=LIMIT, expires_s=60, content_type=CT)
    for change in ({"key": seaweed_store.config.key("u/other.bin")}, {"Content-Type": "text/html"}):
        with pytest.raises(UrlRejected):
            await upload(
                target.url,
                b"u",
                content_type=change.get("Content-Type", CT),
                fields={**target.fields, **change},
                retry=RetryPolicy(1),
            )
    assert not seaweed_store.exists("u/other.bin") and not seaweed_store.exists("u/a.bin")
