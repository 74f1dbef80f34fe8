"""The credential-free client: download and upload by presigned URL (trainer side).

Everything here is async and runs under trio (httpx drives its sockets through anyio),
so it never blocks the event loop. Downloads stream: the size limit is enforced from
Content-Length up front and again while bytes arrive, and the sha256 is computed while
streaming; bytes are returned only once they match. Connection errors, 429 and 5xx are
retried with exponential backoff; 401/403/400 (``UrlRejected``), 404
(``ObjectMissing``), ``HashMismatch``, ``TooLarge`` and ``UrlForbidden`` are final.

A client made with an ``AddressPolicy`` (``new_client(policy=...)``) connects only to
the addresses the policy allows, checked on every connection (``storage.httpio``, where
it is defined):
trainers use one for every URL a job's owner hands them.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from storage.crypto import Decryptor, ObjectId
from storage.errors import HashMismatch, TooLarge, TransferError, redact_url
from storage.httpio import DEFAULT_MAX_CONNECTIONS
from storage.httpio import new_client as new_client  # part of this module's API
from storage.progress import ProgressCallback, ProgressEvent
from storage.retry import DEFAULT_RETRY, RetryPolicy, check_status, retry_transfer

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
#: Writes to disk go through a buffer of this size (fewer thread hops).
_FILE_BUFFER_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class FetchItem:
    """One object to fetch: its presigned URL, expected sha256 and size limit."""

    url: str
    sha256: str
    max_bytes: int


@asynccontextmanager
async def _client_scope(
    client: httpx.AsyncClient | None, max_connections: int = DEFAULT_MAX_CONNECTIONS
) -> AsyncIterator[httpx.AsyncClient]:
    """Yield ``client``, or a fresh one that is closed on exit."""
    if client is not None:
        yield client
        return
    async with new_client(max_connections) as own:
        yield own


def _check_sha256(sha256: str) -> str:
    if not _SHA256_RE.fullmatch(sha256):
        raise ValueError("sha256 must be 64 lowercase hex digits")
    return sha256


def _declared_size(url: str, response: httpx.Response, max_bytes: int) -> int | None:
    """Check the status and the announced size; return the size if announced."""
    check_status(url, response.status_code)
    declared = response.headers.get("content-length")
    if declared is None or not declared.isdigit():
        return None
    if int(declared) > max_bytes:
        raise TooLarge(url, max_bytes, int(declared))
    return int(declared)


async def _fetch_once(client: httpx.AsyncClient, url: str, sha256: str, max_bytes: int) -> bytes:
    """One download attempt: stream, bound, hash, compare."""
    hasher = hashlib.sha256()
    # BytesIO grows in place and getvalue() hands over its buffer without a copy,
    # so every byte is written to fresh memory once.
    with io.BytesIO() as body:
        async with client.stream("GET", url) as response:
            _declared_size(url, response, max_bytes)
            received = 0
            # Raw bytes: the sha256 covers the stored object, not a decoded form of it.
            async for piece in response.aiter_raw():
                received += len(piece)
                if received > max_bytes:
                    raise TooLarge(url, max_bytes, received)
                hasher.update(piece)
                body.write(piece)
        actual = hasher.hexdigest()
        if actual != sha256:
            raise HashMismatch(url, sha256, actual)
        return body.getvalue()


@dataclass(frozen=True)
class Decrypt:
    """Decrypt while downloading (``fetch_to_file``): the object's key and identity.

    Attributes:
        key: The object's 32-byte key.
        oid: Its ``storage.crypto.ObjectId``.
        plain_sha256: The plaintext's expected sha256, checked once it is written.
    """

    key: bytes
    oid: ObjectId
    plain_sha256: str


async def _fetch_to_file_once(
    client: httpx.AsyncClient,
    url: str,
    sha256: str,
    max_bytes: int,
    path: Path,
    decrypt: Decrypt | None = None,
) -> int:
    """One download attempt into a temporary file, renamed to ``path`` once verified."""
    hasher = hashlib.sha256()
    opener = Decryptor(decrypt.key, decrypt.oid) if decrypt else None
    plain_hasher = hashlib.sha256()
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    buffer = bytearray(_FILE_BUFFER_BYTES)
    view = memoryview(buffer)
    try:
        async with await trio.open_file(partial, "wb") as handle:
            async with client.stream("GET", url) as response:
                _declared_size(url, response, max_bytes)
                total = filled = 0
                async for raw in response.aiter_raw():
                    total += len(raw)
                    if total > max_bytes:
                        raise TooLarge(url, max_bytes, total)
                    hasher.update(raw)
                    # Each decrypted segment authenticated; a bad stream fails later,
                    # and the partial file is then removed.
                    piece = opener.update(raw) if opener else raw
                    plain_hasher.update(piece)
                    if filled + len(piece) > len(buffer):
                        await handle.write(view[:filled])
                        filled = 0
                    if len(piece) > len(buffer):
                        await handle.write(piece)
                    else:
                        view[filled : filled + len(piece)] = piece
                        filled += len(piece)
            await handle.write(view[:filled])
            actual = hasher.hexdigest()
            if actual != sha256:
                raise HashMismatch(url, sha256, actual)
            if opener is not None and decrypt is not None:
                last = opener.finalize()
                plain_hasher.update(last)
                await handle.write(last)
                if plain_hasher.hexdigest() != decrypt.plain_sha256:
                    raise HashMismatch(url, decrypt.plain_sha256, plain_hasher.hexdigest())
        await trio.Path(partial).replace(path)
    except BaseException:
        with trio.CancelScope(shield=True):
            await trio.Path(partial).unlink(missing_ok=True)
        raise
    finally:
        view.release()
    return total


async def fetch_to_file(
    url: str,
    path: Path,
    *,
    sha256: str,
    max_bytes: int,
    client: httpx.AsyncClient | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    decrypt: Decrypt | None = None,
) -> int:
    """Download ``url`` into ``path``, which appears only once the sha256 matches.

    Streams through a fixed buffer (memory stays small for large models). Bytes go to
    a hidden temporary file beside ``path`` that is renamed over it when verified and
    removed on any failure or cancellation. Errors are those of ``fetch``.

    With ``decrypt`` the object is a ``storage.crypto`` ciphertext (``sha256`` is its
    hash): it is decrypted segment by segment as it arrives, so memory stays flat
    for a 1 GB model, and ``path`` receives the plaintext, which must hash to
    ``decrypt.plain_sha256``; a stream that does not authenticate raises
    ``storage.crypto.DecryptError``.

    Returns:
        The number of bytes received.
    """
    _check_sha256(sha256)
    async with _client_scope(client) as http:
        return await retry_transfer(
            url,
            retry,
            lambda: _fetch_to_file_once(http, url, sha256, max_bytes, Path(path), decrypt),
        )


async def fetch(
    url: str,
    *,
    sha256: str,
    max_bytes: int,
    client: httpx.AsyncClient | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> bytes:
    """Download ``url`` and return its bytes only if they hash to ``sha256``.

    Args:
        url: a presigned GET URL (no credentials needed).
        sha256: expected lowercase hex digest, from a signed message.
        max_bytes: refuse objects larger than this.
        client: a shared client (connection reuse); default a temporary one.
        retry: retry policy for connection errors, 429 and 5xx.

    Raises:
        UrlRejected: 400/401/403, e.g. expired or tampered signature.
        ObjectMissing: 404.
        TooLarge: Content-Length or the streamed body exceeds ``max_bytes``.
        HashMismatch: the bytes do not match ``sha256``.
        UrlForbidden: the URL's host is an address the client's policy forbids.
        TransferFailed: retryable failures exhausted the attempts.
        ValueError: ``sha256`` is not 64 lowercase hex digits.

    Cancellation aborts the transfer and returns nothing.
    """
    _check_sha256(sha256)
    async with _client_scope(client) as http:
        return await retry_transfer(url, retry, lambda: _fetch_once(http, url, sha256, max_bytes))


async def upload(
    url: str,
    data: bytes,
    *,
    content_type: str,
    fields: Mapping[str, str] | None = None,
    client: httpx.AsyncClient | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
) -> None:
    """Upload ``data`` by presigned PUT, or by presigned POST when ``fields`` are given.

    Args:
        url: a presigned PUT URL, or the form action of a presigned POST.
        data: the bytes to store.
        content_type: the Content-Type that was signed (a header for PUT; for POST
            it is one of the signed ``fields``).
        fields: the signed form fields of a presigned POST (``UploadTarget.fields``),
            sent before the file as S3 requires; None for a PUT.
        client: a shared client; default a temporary one.
        retry: retry policy for connection errors, 429 and 5xx.

    Raises:
        UrlRejected: 400/401/403 (expired, tampered, Content-Type not as signed, or
            over the POST policy's size range).
        ObjectMissing: 404 (e.g. the bucket is gone).
        UrlForbidden: the URL's host is an address the client's policy forbids.
        TransferFailed: retryable failures exhausted the attempts.
    """

    async def attempt() -> None:
        if fields is None:
            response = await http.put(url, content=data, headers={"Content-Type": content_type})
        else:
            response = await http.post(
                url, data=dict(fields), files={"file": ("update", data, content_type)}
            )
        check_status(url, response.status_code)

    async with _client_scope(client) as http:
        await retry_transfer(url, retry, attempt)


async def fetch_many(
    items: Sequence[FetchItem],
    *,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    client: httpx.AsyncClient | None = None,
    retry: RetryPolicy = DEFAULT_RETRY,
    progress: ProgressCallback | None = None,
) -> list[bytes]:
    """Fetch ``items`` concurrently, at most ``max_connections`` at a time.

    Returns:
        The verified bytes of each item, in the order of ``items``.

    Raises:
        TransferError: the first failure (any subclass, as for ``fetch``); the other
            transfers are then cancelled and nothing is returned.
    """
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    for item in items:
        _check_sha256(item.sha256)
    results: list[bytes] = [b""] * len(items)
    failures: list[TransferError] = []
    limiter = trio.CapacityLimiter(max_connections)
    done = {"items": 0, "bytes": 0}

    async with _client_scope(client, max_connections) as http:

        async def one(index: int, item: FetchItem, nursery: trio.Nursery) -> None:
            async with limiter:
                try:
                    data = await fetch(item.url, sha256=item.sha256, max_bytes=item.max_bytes,
                                       client=http, retry=retry)
                except TransferError as exc:
                    failures.append(exc)
                    nursery.cancel_scope.cancel()
                    return
            results[index] = data
            done["items"] += 1
            done["bytes"] += len(data)
            if progress is not None:
                progress(ProgressEvent(phase="download", key=redact_url(item.url), skipped=False,
                                       done_items=done["items"], total_items=len(items),
                                       done_bytes=done["bytes"]))

        async with trio.open_nursery() as nursery:
            for index, item in enumerate(items):
                nursery.start_soon(one, index, item, nursery)
    if failures:
        raise failures[0]
    return results
