"""One contract suite, run against every backend (nanio and SeaweedFS)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from storage.chunks import Manifest, chunk_key, split_records, upload_chunks
from storage.errors import ObjectNotFound
from storage.progress import ProgressEvent
from storage.s3 import S3Store
from storage.store import job_prefix
from storage.transfer import FetchItem, fetch, fetch_many, fetch_to_file, upload

MIB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_put_get_exists_delete(any_store: S3Store) -> None:
    assert not any_store.exists("a/b.bin")
    with pytest.raises(ObjectNotFound) as info:
        any_store.get_bytes("a/b.bin")
    assert info.value.key == "a/b.bin"
    any_store.put_bytes("a/b.bin", b"payload", "application/x-test")
    assert any_store.exists("a/b.bin")
    assert any_store.get_bytes("a/b.bin") == b"payload"
    head = any_store.head("a/b.bin")
    assert (head.size, head.content_type) == (7, "application/x-test")
    any_store.put_bytes("a/b.bin", b"replaced")
    assert any_store.get_bytes("a/b.bin") == b"replaced"
    any_store.delete("a/b.bin")
    assert not any_store.exists("a/b.bin")
    any_store.delete("a/b.bin")  # deleting twice is fine


async def test_presigned_get_and_put(any_store: S3Store) -> None:
    data = os.urandom(300_000)
    any_store.put_bytes("obj", data)
    got = await fetch(any_store.presign_get("obj"), sha256=sha(data), max_bytes=len(data))
    assert got == data

    put_url = any_store.presign_put("up/weights.bin", "application/x-safetensors")
    assert "content-type" in put_url.lower()  # Content-Type is among the signed headers
    await upload(put_url, b"new weights", content_type="application/x-safetensors")
    assert any_store.get_bytes("up/weights.bin") == b"new weights"
    assert any_store.head("up/weights.bin").content_type == "application/x-safetensors"

    # The signature covers the Content-Type: another type is refused by the server.
    async with httpx.AsyncClient() as client:
        other = await client.put(put_url, content=b"x", headers={"Content-Type": "text/plain"})
    assert other.status_code == 403
    assert any_store.get_bytes("up/weights.bin") == b"new weights"


def test_presigned_urls_are_sigv4_with_expiry(any_store: S3Store) -> None:
    url = any_store.presign_get("k", expires_s=120)
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    assert "X-Amz-Expires=120" in url
    assert any_store.config.prefix + "k" in url


async def test_multipart_large_object(any_store: S3Store, tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    block = os.urandom(MIB)
    hasher = hashlib.sha256()
    with path.open("wb") as handle:
        for i in range(64):
            piece = block[i:] + block[:i]
            handle.write(piece)
            hasher.update(piece)
    size = path.stat().st_size
    assert size >= 64 * MIB >= any_store.config.multipart_threshold
    any_store.put_file("big.bin", path)
    head = any_store.head("big.bin")
    assert head.size == size
    parts = size // any_store.config.multipart_part_size
    assert head.etag.endswith(f"-{parts}"), head.etag  # a multipart ETag names its parts
    url = any_store.presign_get("big.bin")
    got = await fetch(url, sha256=hasher.hexdigest(), max_bytes=size)
    assert len(got) == size and sha(got) == hasher.hexdigest()
    del got
    target = tmp_path / "copy.bin"
    written = await fetch_to_file(url, target, sha256=hasher.hexdigest(), max_bytes=size)
    assert written == size and target.read_bytes() == path.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["big.bin", "copy.bin"]


async def test_chunks_manifest_round_trip_and_fetch(any_store: S3Store) -> None:
    records = os.urandom(100 * 50)
    prefix = job_prefix("12D3KooWOwner", "job-1")
    events: list[ProgressEvent] = []
    manifest = upload_chunks(
        any_store, prefix, split_records(records, 100, 16), events.append, total_items=4
    )
    assert [e.samples for e in manifest.entries] == [16, 16, 16, 2]
    assert manifest.total_samples == 50 and manifest.total_bytes == len(records)
    assert [e.done_items for e in events] == [1, 2, 3, 4] and not any(e.skipped for e in events)

    decoded = Manifest.decode(manifest.encode())
    assert decoded == manifest
    items = [FetchItem(any_store.presign_get(e.key), e.sha256, e.size) for e in decoded.entries]
    chunks = await fetch_many(items, max_connections=2)
    assert b"".join(chunks) == records


def test_identical_chunks_are_stored_once(any_store: S3Store) -> None:
    prefix = job_prefix("owner", "job-dedup")
    same = b"identical chunk" * 1000
    events: list[ProgressEvent] = []
    first = upload_chunks(any_store, prefix, [(same, 5), (b"other", 1), (same, 5)], events.append)
    assert [e.skipped for e in events] == [False, False, True]
    assert first.entries[0].key == first.entries[2].key == chunk_key(prefix, sha(same))

    # A second upload of the same data sends nothing: every chunk already exists.
    events.clear()
    second = upload_chunks(any_store, prefix, [(same, 5), (b"other", 1)], events.append)
    assert [e.skipped for e in events] == [True, True]
    assert second.entries == first.entries[:2]
    assert any_store.delete_prefix(prefix) == 2  # two distinct objects were stored


def test_concurrent_upload_keeps_input_order(any_store: S3Store) -> None:
    prefix = job_prefix("owner", "job-order")
    blobs = [os.urandom(2000 + i) for i in range(12)]
    items = [(b, i) for i, b in enumerate(blobs)] + [(blobs[3], 3)]
    events: list[ProgressEvent] = []
    manifest = upload_chunks(any_store, prefix, iter(items), events.append, workers=4)
    assert [e.key for e in manifest.entries] == [chunk_key(prefix, sha(b)) for b, _ in items]
    assert [e.done_items for e in events] == list(range(1, 14))
    assert [e.skipped for e in events] == [False] * 12 + [True]
    assert all(any_store.get_bytes(chunk_key(prefix, sha(b))) == b for b in blobs)
    assert any_store.delete_prefix(prefix) == 12


def test_delete_prefix_removes_one_job_only(any_store: S3Store) -> None:
    job_a = job_prefix("owner", "job-a")
    job_b = job_prefix("owner", "job-b")
    other_owner = job_prefix("owner2", "job-a")
    for i in range(5):
        any_store.put_bytes(f"{job_a}obj-{i}", b"a")
    any_store.put_bytes(f"{job_b}obj", b"b")
    any_store.put_bytes(f"{other_owner}obj", b"c")
    assert any_store.delete_prefix(job_a) == 5
    assert not any_store.exists(f"{job_a}obj-0")
    assert any_store.exists(f"{job_b}obj") and any_store.exists(f"{other_owner}obj")
    assert any_store.delete_prefix(job_a) == 0
