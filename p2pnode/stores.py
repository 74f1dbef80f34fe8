"""The one door from ``p2pnode`` (the daemon and the CLI) into ``storage/``.

- :func:`open_owner_store`: the owner's object store, from the ``[storage]`` table and
  the environment, or an embedded S3 server when none is configured.
- :func:`fetch_verified`: download one object by presigned URL and check its sha256
  (the CLI's ``result`` and the demo fetch the final model this way).
- :class:`StorageError`: the root of everything these raise.

``storage.s3`` pulls in boto3, so the store modules are imported inside the function
that needs them: a daemon that never owns a job, and the CLI, never load it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from storage.errors import StorageError

if TYPE_CHECKING:
    from storage.s3 import S3Store

log = logging.getLogger("distro_train.jobs")

__all__ = ["Stoppable", "StorageError", "fetch_verified", "open_owner_store", "reachable_host"]


class Stoppable(Protocol):
    """Something :func:`open_owner_store` started, to stop when the daemon exits."""

    def stop(self) -> None:
        """Stop it (blocking; idempotent)."""


def reachable_host(addrs: Sequence[str]) -> str:
    """The IPv4 address trainers can reach this daemon on, from its advertised multiaddrs.

    The first ``/ip4/`` address that is not a relay circuit; ``127.0.0.1`` when there is
    none (a daemon on loopback only).
    """
    for addr in addrs:
        parts = addr.split("/")
        if len(parts) > 2 and parts[1] == "ip4" and "p2p-circuit" not in parts:
            return parts[2]
    return "127.0.0.1"


def open_owner_store(
    table: Mapping[str, Any] | None, data_dir: Path, started: list[Stoppable],
    host: str = "127.0.0.1",
) -> S3Store:
    """Build the owner's object store and make sure its bucket exists (blocking).

    With no ``[storage]`` table and no ``DISTRO_TRAIN_S3_ENDPOINT``, an embedded S3
    server is started in ``data_dir/s3`` and appended to ``started``; it binds to
    ``host`` and presigns URLs for it, so pass an address the trainers can reach
    (:func:`reachable_host` of the daemon's advertised addresses).

    Raises:
        StorageError: Bad configuration, or the store could not be reached.
    """
    from storage.config import StoreConfig
    from storage.embedded import EmbeddedS3
    from storage.s3 import S3Store

    if table is None and not os.environ.get("DISTRO_TRAIN_S3_ENDPOINT"):
        server = EmbeddedS3(data_dir / "s3", host=host)
        started.append(server)
        cfg = server.start()
        log.info("no storage configured: embedded S3 server at %s", cfg.endpoint)
    else:
        cfg = StoreConfig.from_mapping(table or {}, env=os.environ)
    store = S3Store(cfg)
    store.ensure_bucket()
    return store


def fetch_verified(
    url: str, sha256: str, max_bytes: int, encryption: Mapping[str, Any] | None = None
) -> bytes:
    """Download ``url`` (at most ``max_bytes``) and check it hashes to ``sha256``.

    With ``encryption`` (a job result's ``model_encryption``: ``key`` in hex,
    ``cipher_sha256``, ``job_id``, ``round``) the stored object is a model's
    ciphertext: its own hash is checked in transit, then it is decrypted and the
    plaintext checked against ``sha256``.

    Blocking: runs its own trio loop, so call it from synchronous code only.

    Raises:
        StorageError: The download failed, was too large, failed its hash or did
            not decrypt (``storage.crypto.DecryptError``).
    """
    import hashlib

    import trio

    from protocols.job.objects import model_id
    from storage import crypto, transfer
    from storage.errors import HashMismatch

    if not encryption:
        return trio.run(lambda: transfer.fetch(url, sha256=sha256, max_bytes=max_bytes))
    try:
        key, cipher_sha = bytes.fromhex(str(encryption["key"])), str(encryption["cipher_sha256"])
        oid = model_id(str(encryption["job_id"]), int(encryption["round"]), sha256)
    except (KeyError, TypeError, ValueError):
        raise crypto.DecryptError("bad_key", "model") from None
    sealed = trio.run(
        lambda: transfer.fetch(url, sha256=cipher_sha, max_bytes=crypto.sealed_size(max_bytes))
    )
    model = crypto.decrypt(key, oid, sealed)
    if hashlib.sha256(model).hexdigest() != sha256:
        raise HashMismatch(url, sha256, hashlib.sha256(model).hexdigest())
    return model
