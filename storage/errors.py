"""Errors raised by the data plane.

Every error carries fields so callers branch on types and attributes, never on
message text. URLs in errors never include their query string (the signature).

::

    StorageError
    ├── StorageConfigError      field, reason: a bad config value
    ├── InvalidKey              key, reason: a key that would escape its namespace
    ├── StoreOperationFailed    op, key, code, reason: the S3 backend refused or failed
    │   └── ObjectNotFound      the key does not exist
    ├── ManifestError           reason, detail: a manifest that is too big or malformed
    ├── EmbeddedServerError     reason, detail: the local S3 server did not start
    └── TransferError           url: by-URL transfers (credential-free client)
        ├── UrlRejected         status: 401/403/400, expired or tampered URL
        ├── UrlForbidden        host, address: the URL's host is in a forbidden network
        ├── ObjectMissing       status: 404
        ├── HashMismatch        expected, actual: content differs from the signed hash
        ├── TooLarge            limit, size: object over the caller's size limit
        └── TransferFailed      attempts, status, detail: retries exhausted

Each ``TransferError`` has a class-level ``reason``, the code a trainer reports when
it gives up a task: ``url_rejected``, ``url_forbidden``, ``object_missing``,
``hash_mismatch``, ``oversize_data``, ``transfer_failed``.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from distro_errors import DistroError


def redact_url(url: str) -> str:
    """Return ``url`` without its query string and fragment (drops any signature)."""
    try:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    except ValueError:
        return "<unparseable URL>"


class StorageError(DistroError):
    """Root of every error raised by ``storage``."""


class StorageConfigError(StorageError):
    """A storage configuration value is missing or invalid."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"storage config field {field!r}: {reason}")


class InvalidKey(StorageError):
    """An object key or key component is not acceptable."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"invalid object key {key!r}: {reason}")


class StoreOperationFailed(StorageError):
    """An operation on the object store failed.

    Attributes:
        op: the operation (``put``, ``get``, ``delete_prefix``...).
        key: the object key concerned ("" for bucket-level operations).
        code: the S3 error code (``AccessDenied``...) or the exception class name.
        reason: a human-readable explanation.
        transient: the store may well succeed if asked again (connection error,
            timeout, 5xx, SlowDown); ``storage.retry.call_store`` retries only these.
    """

    def __init__(
        self, op: str, key: str, code: str, reason: str, *, transient: bool = False
    ) -> None:
        self.op = op
        self.key = key
        self.code = code
        self.reason = reason
        self.transient = transient
        super().__init__(f"{op} {key!r} failed ({code}): {reason}")


class ObjectNotFound(StoreOperationFailed):
    """The requested key does not exist in the store."""

    def __init__(self, op: str, key: str) -> None:
        super().__init__(op, key, "NoSuchKey", "object does not exist")


class ManifestError(StorageError):
    """A manifest is too large or malformed.

    Attributes:
        reason: a short code (``too_large``, ``not_json``, ``bad_field``, ``bad_totals``...).
        detail: what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"manifest rejected ({reason}): {detail}")


class EmbeddedServerError(StorageError):
    """The embedded S3 server could not be started or configured."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"embedded S3 server: {reason}" + (f": {detail}" if detail else ""))


class TransferError(StorageError):
    """A by-URL download or upload failed; ``url`` never includes the signature."""

    reason = "transfer_failed"

    def __init__(self, url: str, message: str) -> None:
        self.url = redact_url(url)
        super().__init__(f"{message} ({self.url})")


class UrlRejected(TransferError):
    """The server refused the presigned URL: expired, tampered or wrong signature."""

    reason = "url_rejected"

    def __init__(self, url: str, status: int) -> None:
        self.status = status
        super().__init__(url, f"presigned URL rejected with HTTP {status} (expired or tampered)")


class ObjectMissing(TransferError):
    """The URL is valid but names no object (HTTP 404)."""

    reason = "object_missing"

    def __init__(self, url: str, status: int = 404) -> None:
        self.status = status
        super().__init__(url, f"object missing (HTTP {status})")


class HashMismatch(TransferError):
    """The fetched bytes do not hash to the expected sha256."""

    reason = "hash_mismatch"

    def __init__(self, url: str, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(url, f"sha256 mismatch: expected {expected}, got {actual}")


class TooLarge(TransferError):
    """The object is larger than the caller's limit; ``size`` is what was seen so far."""

    reason = "oversize_data"

    def __init__(self, url: str, limit: int, size: int) -> None:
        self.limit = limit
        self.size = size
        super().__init__(url, f"object exceeds size limit {limit} bytes (saw {size})")


class UrlForbidden(TransferError):
    """The URL's host is, or resolves to, an address the client's policy forbids.

    Raised before any byte is sent to that address; never retried.

    Attributes:
        host: the host as the URL names it.
        address: the forbidden address it resolved to.
    """

    reason = "url_forbidden"

    def __init__(self, url: str, host: str, address: str) -> None:
        self.host = host
        self.address = address
        super().__init__(url, f"host {host!r} resolves to forbidden address {address}")


class TransferFailed(TransferError):
    """The transfer kept failing with retryable errors until the attempts ran out.

    Attributes:
        attempts: how many attempts were made.
        status: the last HTTP status, or None if the last failure was a connection error.
        detail: the last failure, in words.
    """

    def __init__(self, url: str, attempts: int, status: int | None, detail: str) -> None:
        self.attempts = attempts
        self.status = status
        self.detail = detail
        super().__init__(url, f"transfer failed after {attempts} attempt(s): {detail}")
