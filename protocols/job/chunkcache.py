"""The trainer's chunk cache: fetched chunk bytes on disk, by their sha256, bounded.

A trainer keeps the chunks it downloaded, named by the hash they were fetched and
verified under (the ciphertext hash for an encrypted chunk, else the content hash:
never anything about a plaintext the owner did not publish), so a later round or
another job that hands it the same bytes moves none of them over the network. Entries
are files in ``directory``; the oldest used are deleted once the total passes
``max_bytes``. A file is checked against its name on every read (a corrupt or edited
file is deleted and counts as a miss). All methods block: call them from a thread.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")


class ChunkCache:
    """Bounded on-disk cache of verified chunk bytes keyed by sha256 (hex)."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.hit_bytes = 0

    def _path(self, sha256: str) -> Path | None:
        return self.directory / sha256 if _SHA256.fullmatch(sha256) else None

    def get(self, sha256: str) -> bytes | None:
        """The cached bytes hashing to ``sha256``, or None."""
        path = self._path(sha256)
        data = None
        if path is not None and self.max_bytes > 0:
            try:
                data = path.read_bytes()
            except OSError:
                data = None
            if data is not None and hashlib.sha256(data).hexdigest() != sha256:
                log.warning("chunk cache entry %s is corrupt; deleted", sha256[:12])
                path.unlink(missing_ok=True)
                data = None
        if data is None:
            self.misses += 1
            return None
        assert path is not None
        os.utime(path)  # most recently used
        self.hits += 1
        self.hit_bytes += len(data)
        return data

    def put(self, sha256: str, data: bytes) -> None:
        """Keep ``data`` (already verified to hash to ``sha256``); evict the oldest."""
        path = self._path(sha256)
        if path is None or not 0 < len(data) <= self.max_bytes:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            self._evict()
        except OSError as exc:
            log.warning("chunk cache: cannot store %s: %s", sha256[:12], exc)

    def _evict(self) -> None:
        entries = []
        for p in self.directory.iterdir():
            if _SHA256.fullmatch(p.name):
                st = p.stat()
                entries.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in entries)
        for _, size, p in sorted(entries):
            if total <= self.max_bytes:
                break
            p.unlink(missing_ok=True)
            total -= size
