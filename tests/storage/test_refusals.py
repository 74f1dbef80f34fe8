"""Refusals: each bad case gives its own error and nothing reaches the caller."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
import trio

from storage.errors import HashMismatch, ObjectMissing, TooLarge, UrlRejected
from storage.retry import RetryPolicy
from storage.s3 import S3Store
from storage.transfer import FetchItem, fetch, fetch_many, fetch_to_file, upload

NO_RETRY = RetryPolicy(attempts=1)
#: Presigned URLs here live 1 s; the server's clock granularity is 1 s.
EXPIRY_TIMEOUT_S = 15.0
POLL_S = 0.1


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tamper_signature(url: str) -> str:
    head, _, signature = url.rpartition("X-Amz-Signature=")
    assert signature, url
    flipped = "0" if signature[0] != "0" else "1"
    return f"{head}X-Amz-Signature={flipped}{signature[1:]}"


async def test_one_changed_signature_character_is_rejected(any_store: S3Store) -> None:
    data = b"secret chunk"
    any_store.put_bytes("c", data)
    url = tamper_signature(any_store.presign_get("c"))
    with pytest.raises(UrlRejected) as info:
        await fetch(url, sha256=sha(data), max_bytes=100)
    assert info.value.status == 403
    assert "X-Amz" not in str(info.value)  # the signature never leaks into errors

    put_url = tamper_signature(any_store.presign_put("u", "application/octet-stream"))
    with pytest.raises(UrlRejected):
        await upload(put_url, b"evil", content_type="application/octet-stream")
    assert not any_store.exists("u")


async def test_expired_url_is_rejected(any_store: S3Store) -> None:
    data = b"short-lived"
    any_store.put_bytes("e", data)
    # PUT signed first: its X-Amz-Date is never later than the GET's, so once the GET
    # URL is refused the PUT URL has expired too.
    put_url = any_store.presign_put("e2", "application/octet-stream", expires_s=1)
    url = any_store.presign_get("e", expires_s=1)
    async with httpx.AsyncClient() as client:
        # Wait on the condition (the server refuses the URL), not a fixed time.
        with trio.fail_after(EXPIRY_TIMEOUT_S):
            while True:
                if (await client.get(url)).status_code == 403:
                    break
                await trio.sleep(POLL_S)
    with pytest.raises(UrlRejected):
        await fetch(url, sha256=sha(data), max_bytes=100, retry=NO_RETRY)
    with pytest.raises(UrlRejected):
        await upload(put_url, b"late", content_type="application/octet-stream")
    assert not any_store.exists("e2")


async def test_object_altered_after_hash_recorded(any_store: S3Store, tmp_path: Path) -> None:
    original = os.urandom(50_000)
    recorded = sha(original)
    any_store.put_bytes("m", original)
    url = any_store.presign_get("m")
    altered = bytearray(original)
    altered[25_000] ^= 0xFF
    any_store.put_bytes("m", bytes(altered))
    with pytest.raises(HashMismatch) as info:
        await fetch(url, sha256=recorded, max_bytes=len(original))
    assert info.value.expected == recorded and info.value.actual == sha(bytes(altered))

    # To a file: nothing unverified is left behind, not even a partial file.
    target = tmp_path / "chunk.bin"
    with pytest.raises(HashMismatch):
        await fetch_to_file(url, target, sha256=recorded, max_bytes=len(original))
    assert os.listdir(tmp_path) == []
    with pytest.raises(TooLarge):
        await fetch_to_file(url, target, sha256=recorded, max_bytes=100)
    assert os.listdir(tmp_path) == []


async def test_object_over_the_limit(any_store: S3Store) -> None:
    data = os.urandom(10_000)
    any_store.put_bytes("big", data)
    with pytest.raises(TooLarge) as info:
        await fetch(any_store.presign_get("big"), sha256=sha(data), max_bytes=9_999)
    assert info.value.limit == 9_999 and info.value.size == 10_000


async def test_missing_object(any_store: S3Store) -> None:
    with pytest.raises(ObjectMissing):
        await fetch(any_store.presign_get("nothing-here"), sha256="0" * 64, max_bytes=10)


async def test_fetch_many_fails_whole_batch_on_one_bad_chunk(any_store: S3Store) -> None:
    good, bad = os.urandom(1000), os.urandom(1000)
    any_store.put_bytes("good", good)
    any_store.put_bytes("bad", bad)
    items = [
        FetchItem(any_store.presign_get("good"), sha(good), 1000),
        FetchItem(any_store.presign_get("bad"), sha(good), 1000),  # wrong hash recorded
    ]
    with pytest.raises(HashMismatch):
        await fetch_many(items, max_connections=2)
