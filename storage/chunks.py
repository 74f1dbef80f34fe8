"""Content-addressed chunks and the manifest that lists them.

A chunk's key is ``<job prefix>chunks/<sha256 hex of its stored bytes>``, so identical
chunks share one object and a chunk already in the store is never uploaded again.
Encrypted chunks (``upload_chunks(..., seal=...)``) are addressed by their
ciphertext, which a deterministic per-chunk key makes a function of the job's key
and the plaintext: identical chunks of one job still share one object, and the key
names no hash of the plaintext for the storage operator to test guesses against. The
manifest is JSON; ``Manifest.decode`` treats its input as untrusted: size first, then
parse, then validate every field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import distro_json
from storage.errors import ManifestError
from storage.progress import ProgressEvent
from storage.store import ObjectStore, check_prefix

MANIFEST_VERSION = 1
#: Default ceiling for an encoded manifest (about 30k entries).
DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024
CHUNK_CONTENT_TYPE = "application/octet-stream"
#: Chunk uploads in flight at once (``upload_chunks``).
UPLOAD_WORKERS = 4
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def chunk_key(prefix: str, sha256_hex: str) -> str:
    """Return the key of the chunk whose bytes hash to ``sha256_hex`` under ``prefix``."""
    return f"{check_prefix(prefix)}chunks/{sha256_hex}"


def split_records(
    data: bytes, record_size: int, records_per_chunk: int
) -> Iterator[tuple[bytes, int]]:
    """Split fixed-size records into chunks of ``records_per_chunk`` whole records.

    Yields ``(chunk bytes, sample count)``, ready for ``upload_chunks``.

    Raises:
        ValueError: ``data`` is not a whole number of records, or a size is not positive.
    """
    if record_size <= 0 or records_per_chunk <= 0:
        raise ValueError("record_size and records_per_chunk must be positive")
    if len(data) % record_size:
        raise ValueError(f"{len(data)} bytes is not a multiple of record size {record_size}")
    step = record_size * records_per_chunk
    for start in range(0, len(data), step):
        piece = data[start : start + step]
        yield piece, len(piece) // record_size


@dataclass(frozen=True)
class ManifestEntry:
    """One chunk: its key (relative to the store prefix), size, sha256 and sample count.

    ``size`` and ``sha256`` are those of the stored bytes. For an encrypted chunk
    ``plain_sha256`` and ``plain_size`` describe its plaintext (its content
    identity); both are empty (``""``, 0) for a chunk stored in the clear.
    """

    key: str
    size: int
    sha256: str
    samples: int
    plain_sha256: str = ""
    plain_size: int = 0


@dataclass(frozen=True)
class Manifest:
    """The ordered list of a dataset's chunks."""

    entries: tuple[ManifestEntry, ...]

    @property
    def total_bytes(self) -> int:
        """Sum of the chunk sizes."""
        return sum(e.size for e in self.entries)

    @property
    def total_samples(self) -> int:
        """Sum of the chunk sample counts."""
        return sum(e.samples for e in self.entries)

    def encode(self) -> bytes:
        """Return the manifest as canonical JSON bytes (sorted keys, no spaces)."""
        body = {
            "version": MANIFEST_VERSION,
            "entries": [_encode_entry(e) for e in self.entries],
            "total_bytes": self.total_bytes,
            "total_samples": self.total_samples,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, max_bytes: int = DEFAULT_MAX_MANIFEST_BYTES) -> Manifest:
        """Parse and validate an untrusted encoded manifest.

        Raises:
            ManifestError: over ``max_bytes`` (checked before parsing), not JSON, or any
                field missing, of the wrong type or inconsistent (totals, key vs hash).
        """
        if len(data) > max_bytes:
            raise ManifestError("too_large", f"{len(data)} bytes > limit {max_bytes}")
        try:
            body = distro_json.loads(data)
        except ValueError as exc:
            raise ManifestError("not_json", str(exc)) from exc
        if not isinstance(body, dict):
            raise ManifestError("bad_field", "top level must be an object")
        if body.get("version") != MANIFEST_VERSION:
            raise ManifestError("bad_version", f"expected version {MANIFEST_VERSION}")
        raw_entries = body.get("entries")
        if not isinstance(raw_entries, list):
            raise ManifestError("bad_field", "entries must be a list")
        manifest = cls(tuple(_entry(i, raw) for i, raw in enumerate(raw_entries)))
        for name in ("total_bytes", "total_samples"):
            if body.get(name) != getattr(manifest, name):
                raise ManifestError("bad_totals", f"{name} does not match the entries")
        return manifest


_PLAIN_FIELDS = {"key", "size", "sha256", "samples"}
_SEALED_FIELDS = _PLAIN_FIELDS | {"plain_sha256", "plain_size"}


def _encode_entry(e: ManifestEntry) -> dict[str, Any]:
    out: dict[str, Any] = {"key": e.key, "size": e.size, "sha256": e.sha256, "samples": e.samples}
    if e.plain_sha256:
        out.update(plain_sha256=e.plain_sha256, plain_size=e.plain_size)
    return out


def _entry(index: int, raw: Any) -> ManifestEntry:
    """Validate one decoded manifest entry."""
    where = f"entries[{index}]"
    if not isinstance(raw, dict) or set(raw) not in (_PLAIN_FIELDS, _SEALED_FIELDS):
        raise ManifestError(
            "bad_field",
            f"{where} must have exactly key, size, sha256, samples (and, when encrypted, "
            "plain_sha256 and plain_size)",
        )
    key, size, sha, samples = raw["key"], raw["size"], raw["sha256"], raw["samples"]
    plain_sha, plain_size = raw.get("plain_sha256", ""), raw.get("plain_size", 0)
    for name, digest in (("sha256", sha), ("plain_sha256", plain_sha or "0" * 64)):
        if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
            raise ManifestError("bad_field", f"{where}.{name} must be 64 lowercase hex digits")
    if not isinstance(key, str) or not key.endswith(f"chunks/{sha}"):
        raise ManifestError("bad_field", f"{where}.key must end with chunks/<sha256>")
    for name, value in (("size", size), ("samples", samples), ("plain_size", plain_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ManifestError("bad_field", f"{where}.{name} must be a non-negative integer")
    return ManifestEntry(key, size, sha, samples, plain_sha, plain_size)


def upload_chunks(
    store: ObjectStore,
    prefix: str,
    items: Iterable[tuple[bytes, int]],
    progress: Callable[[ProgressEvent], None] | None = None,
    *,
    total_items: int | None = None,
    seal: Callable[[bytes, str], bytes] | None = None,
    workers: int = UPLOAD_WORKERS,
) -> Manifest:
    """Upload chunks under ``prefix`` (content-addressed, deduplicated) and list them.

    A chunk whose key already exists in the store, or that appeared earlier in
    ``items``, is not uploaded again; it is still listed in the manifest, in order.
    Up to ``workers`` chunks are checked and uploaded at once (the store is
    thread-safe); at most ``2 * workers`` sealed chunks wait in memory, and
    ``items`` is read no faster than they leave, so an iterator that makes each
    chunk on demand is never held whole. Blocking: run it in a worker thread from
    async code.

    Args:
        store: the owner's store.
        prefix: usually ``job_prefix(owner, job)``.
        items: ``(chunk bytes, sample count)`` pairs.
        progress: called after each chunk, in input order, with a ``ProgressEvent``.
        total_items: the number of items, if known, for progress displays.
        seal: encrypts a chunk, given its bytes and their sha256, into the bytes to
            store; it must be deterministic for content addressing to deduplicate.
            None stores chunks in the clear.
        workers: uploads in flight at once (>= 1).

    Returns:
        The manifest of every chunk, in input order.

    Raises:
        StorageError: an upload failed (the others in flight finish first).
    """
    entries: list[ManifestEntry] = []
    pending: deque[tuple[ManifestEntry, Future[bool] | None]] = deque()
    seen: set[str] = set()
    done_bytes = 0

    def finish_oldest() -> None:
        nonlocal done_bytes
        entry, upload = pending.popleft()
        skipped = True if upload is None else upload.result()
        entries.append(entry)
        done_bytes += entry.size
        if progress is not None:
            progress(ProgressEvent(phase="upload", key=entry.key, skipped=skipped,
                                   done_items=len(entries), total_items=total_items,
                                   done_bytes=done_bytes))

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for data, samples in items:
            entry, stored = _addressed(prefix, data, samples, seal)
            upload = None if entry.key in seen else pool.submit(_put_new, store, entry.key, stored)
            seen.add(entry.key)
            pending.append((entry, upload))
            while len(pending) > 2 * max(1, workers):
                finish_oldest()
        while pending:
            finish_oldest()
    return Manifest(tuple(entries))


def _addressed(
    prefix: str, data: bytes, samples: int, seal: Callable[[bytes, str], bytes] | None
) -> tuple[ManifestEntry, bytes]:
    """A chunk's manifest entry and the bytes to store (``data``, or ``seal``'s output)."""
    sha = plain_sha = hashlib.sha256(data).hexdigest()
    if seal is None:
        return ManifestEntry(chunk_key(prefix, sha), len(data), sha, samples), data
    stored = seal(data, plain_sha)
    sha = hashlib.sha256(stored).hexdigest()
    entry = ManifestEntry(chunk_key(prefix, sha), len(stored), sha, samples, plain_sha, len(data))
    return entry, stored


def _put_new(store: ObjectStore, key: str, data: bytes) -> bool:
    """Store ``data`` under ``key`` unless it is there already; True when it was."""
    if store.exists(key):
        return True
    store.put_bytes(key, data, CHUNK_CONTENT_TYPE)
    return False
