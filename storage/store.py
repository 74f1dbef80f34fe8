"""The object-store interface (owner side) and its key namespace.

The API is synchronous (boto3 is); async callers run it off the event loop with
``trio.to_thread.run_sync``. Keys passed to a store are relative to the config's
``prefix``; ``job_prefix`` gives each (owner, job) pair its own namespace so that
keys never collide and a finished job is deleted with one ``delete_prefix`` call.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from storage.errors import InvalidKey, TooLarge

_COMPONENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_KEY_BYTES = 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def job_prefix(owner_peer_id: str, job_id: str) -> str:
    """Return the key prefix for one owner's job: ``jobs/<owner>/<job>/``.

    Raises:
        InvalidKey: a component is empty, too long, ``.``/``..`` or has characters
            outside ``A-Za-z0-9._-`` (so it can never escape its namespace).
    """
    for part in (owner_peer_id, job_id):
        if not _COMPONENT_RE.fullmatch(part) or part in (".", ".."):
            raise InvalidKey(part, "job prefix components are 1-128 of A-Za-z0-9._-")
    return f"jobs/{owner_peer_id}/{job_id}/"


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key.

    Raises:
        InvalidKey: empty, absolute, containing ``..`` segments, control characters,
            or longer than 1024 bytes.
    """
    if not key or key.startswith("/") or len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidKey(key, "must be 1-1024 bytes and relative")
    if ".." in key.split("/") or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidKey(key, "no '..' segments or control characters")
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is "" or a safe key prefix ending in ``/``.

    Raises:
        InvalidKey: if it is not.
    """
    if prefix and (not prefix.endswith("/") or check_key(prefix) != prefix):
        raise InvalidKey(prefix, "a prefix ends with '/'")
    return prefix


@dataclass(frozen=True)
class ObjectInfo:
    """What ``head`` reports about a stored object."""

    key: str
    size: int
    etag: str
    content_type: str


@dataclass(frozen=True)
class UploadTarget:
    """Where and how an uploader without credentials stores one object.

    Attributes:
        url: the presigned PUT URL, or the form action of a presigned POST.
        fields: the signed form fields of a POST (sent before the file); empty for PUT.
        size_enforced: whether the server itself refuses more than the agreed size
            (a POST policy's ``content-length-range``). When false the owner must check
            the object's size before using it: ``ObjectStore.check_upload``.
    """

    url: str
    fields: Mapping[str, str] = field(default_factory=dict)
    size_enforced: bool = False


class ObjectStore(ABC):
    """A bucket of objects, seen through one key prefix (owner side, with credentials).

    Every method is blocking and thread-safe; raise ``StorageError`` subclasses only.
    """

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store ``data`` at ``key``, replacing any existing object."""

    @abstractmethod
    def put_file(self, key: str, path: Path, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """Store the file at ``path``; files over the multipart threshold go in parts."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes.

        Raises:
            ObjectNotFound: no such key.
        """

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Return the object's size, ETag and content type.

        Raises:
            ObjectNotFound: no such key.
        """

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Return whether ``key`` exists."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` and return how many were deleted."""

    @abstractmethod
    def presign_get(self, key: str, expires_s: int | None = None) -> str:
        """Return a SigV4 presigned GET URL valid ``expires_s`` seconds (config default)."""

    @abstractmethod
    def presign_put(
        self, key: str, content_type: str = DEFAULT_CONTENT_TYPE, expires_s: int | None = None
    ) -> str:
        """Return a SigV4 presigned PUT URL; the uploader must send ``content_type``."""

    @abstractmethod
    def presign_upload(
        self,
        key: str,
        *,
        max_bytes: int,
        expires_s: int,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> UploadTarget:
        """Return a target that accepts at most ``max_bytes`` at ``key`` for ``expires_s``.

        Where the server enforces a POST policy this is a presigned POST with a
        ``content-length-range`` of ``0..max_bytes`` and the Content-Type fixed;
        elsewhere a presigned PUT with ``size_enforced`` false.
        """

    def check_upload(self, key: str, max_bytes: int) -> ObjectInfo:
        """Return what was uploaded at ``key``, deleting it if it is over ``max_bytes``.

        The fallback for targets whose server does not enforce the size: call it
        before using an uploaded object.

        Raises:
            ObjectNotFound: nothing was uploaded.
            TooLarge: the object was larger than ``max_bytes`` (it is deleted).
        """
        info = self.head(key)
        if info.size > max_bytes:
            self.delete(key)
            raise TooLarge(key, max_bytes, info.size)
        return info

    @abstractmethod
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""

