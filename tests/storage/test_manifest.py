"""Manifest encode/decode: untrusted input is size-checked, parsed, then validated."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.chunks import Manifest, ManifestEntry, chunk_key, split_records
from storage.errors import ManifestError


def entry(data: bytes, samples: int) -> ManifestEntry:
    sha = hashlib.sha256(data).hexdigest()
    return ManifestEntry(chunk_key("jobs/o/j/", sha), len(data), sha, samples)


@given(st.lists(st.tuples(st.binary(max_size=64), st.integers(0, 10_000)), max_size=20))
def test_round_trip(chunks: list[tuple[bytes, int]]) -> None:
    manifest = Manifest(tuple(entry(d, n) for d, n in chunks))
    assert Manifest.decode(manifest.encode()) == manifest


def good_body() -> dict[str, object]:
    return json.loads(Manifest((entry(b"a", 1), entry(b"bb", 2))).encode())


def mutate(change: dict[str, object]) -> bytes:
    body = good_body()
    body.update(change)
    return json.dumps(body).encode()


def test_size_checked_before_parsing() -> None:
    data = Manifest((entry(b"a", 1),)).encode()
    with pytest.raises(ManifestError) as info:
        Manifest.decode(data, max_bytes=len(data) - 1)
    assert info.value.reason == "too_large"
    with pytest.raises(ManifestError) as info:
        Manifest.decode(b"[" * 10_000_000, max_bytes=1000)  # would be costly to parse
    assert info.value.reason == "too_large"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe", "not_json"),
        (b"{", "not_json"),
        (b"[" * 100_000, "not_json"),
        (b"[]", "bad_field"),
        (mutate({"version": 2}), "bad_version"),
        (mutate({"entries": {}}), "bad_field"),
        (mutate({"total_bytes": 99}), "bad_totals"),
        (mutate({"total_samples": -1}), "bad_totals"),
    ],
)
def test_malformed_manifests(data: bytes, reason: str) -> None:
    with pytest.raises(ManifestError) as info:
        Manifest.decode(data)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "change",
    [
        {"sha256": "ABC"},
        {"sha256": "0" * 64},  # key no longer ends with chunks/<sha256>
        {"key": "elsewhere"},
        {"size": -1},
        {"size": True},
        {"samples": 1.5},
        {"extra": 1},
    ],
)
def test_bad_entries(change: dict[str, object]) -> None:
    body = good_body()
    entries = body["entries"]
    assert isinstance(entries, list)
    entries[0] = {**entries[0], **change}
    with pytest.raises(ManifestError) as info:
        Manifest.decode(json.dumps(body).encode())
    assert info.value.reason == "bad_field"


def test_split_records() -> None:
    data = bytes(range(10)) * 7
    chunks = list(split_records(data, record_size=10, records_per_chunk=3))
    assert [n for _, n in chunks] == [3, 3, 1]
    assert b"".join(c for c, _ in chunks) == data
    with pytest.raises(ValueError):
        list(split_records(data + b"x", record_size=10, records_per_chunk=3))
