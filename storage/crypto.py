"""Objects encrypted at rest: a streaming AEAD format bound to each object's identity.

Every object the owner stores (chunks, global models) and every trainer's update is
encrypted with AES-256-GCM before it leaves its author, so the storage provider
sees only ciphertext. The format is the STREAM construction (Hoang, Reyhanitabar,
Rogaway, Vizár 2015), so encryption and decryption run segment by segment and
memory stays flat however large the object:

::

    header  = b"DTE1" | alg (1 byte, 1 = AES-256-GCM) | log2 segment size (1) |
              nonce prefix (7 random bytes)                           13 bytes
    segment = AES-256-GCM(key, nonce = prefix | counter (4, big-endian) | last (1),
                          aad = header | identity) of one plaintext segment + 16-byte tag

Every segment but the last holds exactly one segment of plaintext; the last (flag
1) holds the rest: 1 to one segment's bytes, or none for an empty object.
Reordering, dropping, truncating or appending segments, or changing a header byte,
fails authentication. The ``identity``
(:class:`ObjectId`: kind, job, round, name) is associated data: a ciphertext moved
to another object's key, slot or round does not decrypt.

Keys: :func:`derive_key` makes a per-object key from the owner's job key (stored
in its job store) and the object's identity; a trainer's update gets a random key
(:func:`new_key`), sealed to the owner. With ``nonce_prefix`` derived from the key
(:func:`derived_prefix`) encryption is deterministic, which is safe only because
a derived key is bound to one plaintext (its identity names its content hash),
and is what lets identical chunks of a job share one content-addressed object.

Errors: :class:`DecryptError` (reason ``undecryptable``) for anything that does not
authenticate, with a ``detail`` saying what (``bad_key``, ``bad_header``,
``tampered``, ``truncated``, ``trailing_data``).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from storage.errors import StorageError

MAGIC = b"DTE1"
ALG_AES256GCM = 1
KEY_BYTES = 32
TAG_BYTES = 16
PREFIX_BYTES = 7
HEADER_BYTES = len(MAGIC) + 2 + PREFIX_BYTES
#: Default plaintext bytes per segment (1 MiB): large enough that the per-call cost
#: vanishes, small enough that a stream holds little.
DEFAULT_SEGMENT_LOG2 = 20
_MIN_SEGMENT_LOG2, _MAX_SEGMENT_LOG2 = 10, 24
_AAD_PREFIX = b"distro-train/v1 object\x00"


class DecryptError(StorageError):
    """Ciphertext that does not authenticate under the given key and identity.

    Attributes:
        reason: always ``undecryptable`` (what a trainer or the owner reports).
        detail: ``bad_key`` (not 32 bytes), ``bad_header``, ``tampered`` (wrong key,
            wrong identity or altered bytes: AEAD cannot tell these apart),
            ``truncated`` or ``trailing_data``.
    """

    reason = "undecryptable"

    def __init__(self, detail: str, what: str = "") -> None:
        self.detail = detail
        super().__init__(
            f"cannot decrypt {what or 'object'}: {detail} "
            "(wrong key, moved to another object, or altered)"
        )


@dataclass(frozen=True)
class ObjectId:
    """What an object is, bound into its ciphertext as associated data.

    Attributes:
        kind: ``chunk``, ``model``, ``update`` (or ``manifest``).
        job_id: The job it belongs to.
        round: The round (0 for a job's chunks and its initial model).
        name: What tells it apart within (kind, job, round): a chunk's and a
            model's plaintext sha256, an update's trainer peer id.
    """

    kind: str
    job_id: str
    round: int = 0
    name: str = ""

    def aad(self) -> bytes:
        """The associated-data encoding (unambiguous: fields are NUL-separated)."""
        parts = [self.kind, self.job_id, str(self.round), self.name]
        if any("\x00" in p for p in parts):
            raise ValueError("object identity fields may not contain NUL")
        return _AAD_PREFIX + "\x00".join(parts).encode()

    def __str__(self) -> str:
        """A short form for errors and logs."""
        return f"{self.kind} {self.name[:16]} of job {self.job_id} round {self.round}"


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return AESGCM.generate_key(bit_length=256)


def derive_key(job_key: bytes, oid: ObjectId) -> bytes:
    """The per-object key of ``oid`` under the owner's ``job_key`` (HKDF-SHA256)."""
    if len(job_key) != KEY_BYTES:
        raise ValueError("a job key is 32 bytes")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=oid.aad())
    return hkdf.derive(job_key)


def derived_prefix(key: bytes) -> bytes:
    """A nonce prefix determined by ``key``, for deterministic encryption (see module)."""
    return hmac.new(key, b"distro-train/v1 nonce prefix", hashlib.sha256).digest()[:PREFIX_BYTES]


def sealed_size(plain_size: int, segment_log2: int = DEFAULT_SEGMENT_LOG2) -> int:
    """The ciphertext size of ``plain_size`` plaintext bytes."""
    segments = max(1, -(-plain_size // (1 << segment_log2)))
    return HEADER_BYTES + plain_size + segments * TAG_BYTES


def max_sealed_size(plain_size: int) -> int:
    """The largest ciphertext of ``plain_size`` plaintext bytes (smallest segments)."""
    return sealed_size(plain_size, _MIN_SEGMENT_LOG2)


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= 1 << 32:
        raise ValueError("object too large for one stream (2^32 segments)")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class Encryptor:
    """Incremental encryption of one object: ``update`` pieces, then ``finalize``.

    Holds at most one segment of plaintext between calls. The header is the first
    output (of the first ``update`` or of ``finalize``).
    """

    def __init__(
        self,
        key: bytes,
        oid: ObjectId,
        *,
        nonce_prefix: bytes | None = None,
        segment_log2: int = DEFAULT_SEGMENT_LOG2,
    ) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("an object key is 32 bytes")
        if not _MIN_SEGMENT_LOG2 <= segment_log2 <= _MAX_SEGMENT_LOG2:
            raise ValueError("segment size out of range")
        prefix = os.urandom(PREFIX_BYTES) if nonce_prefix is None else nonce_prefix
        if len(prefix) != PREFIX_BYTES:
            raise ValueError("a nonce prefix is 7 bytes")
        self._aead = AESGCM(key)
        self._prefix = prefix
        self._segment = 1 << segment_log2
        self.header = MAGIC + bytes([ALG_AES256GCM, segment_log2]) + prefix
        self._aad = self.header + oid.aad()
        self._buffer = bytearray()
        self._counter = 0
        self._started = False
        self._done = False

    def _head(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self.header

    def update(self, data: bytes) -> bytes:
        """Encrypt what ``data`` completes; returns ciphertext (possibly empty)."""
        if self._done:
            raise ValueError("encryptor already finalized")
        self._buffer += data
        out = [self._head()]
        # Keep at least one byte back: the last segment must be sealed as last.
        while len(self._buffer) > self._segment:
            piece = bytes(self._buffer[: self._segment])
            del self._buffer[: self._segment]
            nonce = _nonce(self._prefix, self._counter, last=False)
            out.append(self._aead.encrypt(nonce, piece, self._aad))
            self._counter += 1
        return b"".join(out)

    def finalize(self) -> bytes:
        """Seal the last segment; returns the rest of the ciphertext."""
        if self._done:
            raise ValueError("encryptor already finalized")
        self._done = True
        nonce = _nonce(self._prefix, self._counter, last=True)
        last = self._aead.encrypt(nonce, bytes(self._buffer), self._aad)
        self._buffer.clear()
        return self._head() + last


class Decryptor:
    """Incremental decryption of one object; every byte it returns is authenticated.

    ``update`` returns only plaintext whose segment authenticated; ``finalize``
    raises if the stream ended before its last segment. Holds at most one segment.

    Raises:
        DecryptError: from ``update`` or ``finalize`` (see the module).
    """

    def __init__(self, key: bytes, oid: ObjectId) -> None:
        if len(key) != KEY_BYTES:
            raise DecryptError("bad_key", str(oid))
        self._aead = AESGCM(key)
        self._oid = oid
        self._buffer = bytearray()
        self._header: bytes | None = None
        self._segment = 0
        self._counter = 0
        self._done = False

    def _read_header(self) -> bool:
        if len(self._buffer) < HEADER_BYTES:
            return False
        header = bytes(self._buffer[:HEADER_BYTES])
        log2 = header[5]
        if (
            header[:4] != MAGIC
            or header[4] != ALG_AES256GCM
            or not _MIN_SEGMENT_LOG2 <= log2 <= _MAX_SEGMENT_LOG2
        ):
            raise DecryptError("bad_header", str(self._oid))
        del self._buffer[:HEADER_BYTES]
        self._header = header
        self._segment = (1 << log2) + TAG_BYTES
        self._aad = header + self._oid.aad()
        return True

    def _open(self, piece: bytes | memoryview, last: bool) -> bytes:
        assert self._header is not None
        nonce = _nonce(self._header[6:], self._counter, last)
        try:
            plain = self._aead.decrypt(nonce, piece, self._aad)
        except InvalidTag:
            raise DecryptError("tampered", str(self._oid)) from None
        self._counter += 1
        return plain

    def update(self, data: bytes) -> bytes:
        """Feed ciphertext; returns the plaintext of every segment it completed."""
        if self._done:
            if data:
                raise DecryptError("trailing_data", str(self._oid))
            return b""
        self._buffer += data
        if self._header is None and not self._read_header():
            return b""
        out = []
        # A full segment followed by more bytes cannot be the last one.
        while len(self._buffer) > self._segment:
            piece = bytes(self._buffer[: self._segment])
            del self._buffer[: self._segment]
            out.append(self._open(piece, last=False))
        return b"".join(out)

    def finalize(self) -> bytes:
        """Open the last segment; returns its plaintext."""
        if self._done:
            return b""
        if self._header is None or len(self._buffer) < TAG_BYTES:
            raise DecryptError("truncated", str(self._oid))
        self._done = True
        last = self._open(bytes(self._buffer), last=True)
        self._buffer.clear()
        return last


def encrypt(key: bytes, oid: ObjectId, data: bytes, *, nonce_prefix: bytes | None = None) -> bytes:
    """Encrypt a whole object held in memory (the same bytes as streaming it)."""
    enc = Encryptor(key, oid, nonce_prefix=nonce_prefix)
    seg, view = enc._segment, memoryview(data)  # noqa: SLF001 - same module
    full = max(0, (len(view) - 1) // seg)
    out = [enc.header]
    for i in range(full):
        nonce = _nonce(enc._prefix, i, last=False)  # noqa: SLF001
        out.append(enc._aead.encrypt(nonce, view[i * seg : (i + 1) * seg], enc._aad))  # noqa: SLF001
    nonce = _nonce(enc._prefix, full, last=True)  # noqa: SLF001
    out.append(enc._aead.encrypt(nonce, view[full * seg :], enc._aad))  # noqa: SLF001
    return b"".join(out)


def decrypt(key: bytes, oid: ObjectId, data: bytes) -> bytes:
    """Decrypt a whole object held in memory.

    Raises:
        DecryptError: see the module.
    """
    dec = Decryptor(key, oid)
    view = memoryview(data)
    dec._buffer += view[:HEADER_BYTES]  # noqa: SLF001 - same module
    if not dec._read_header():  # noqa: SLF001
        raise DecryptError("truncated", str(oid))
    seg, body = dec._segment, view[HEADER_BYTES:]  # noqa: SLF001
    if len(body) < TAG_BYTES:
        raise DecryptError("truncated", str(oid))
    full = (len(body) - 1) // seg
    out = [dec._open(body[i * seg : (i + 1) * seg], last=False) for i in range(full)]  # noqa: SLF001
    out.append(dec._open(body[full * seg :], last=True))  # noqa: SLF001
    return b"".join(out)


def encrypt_stream(
    key: bytes,
    oid: ObjectId,
    src: BinaryIO,
    dst: BinaryIO,
    *,
    nonce_prefix: bytes | None = None,
    read_bytes: int = 1 << 20,
) -> int:
    """Encrypt ``src`` into ``dst`` reading ``read_bytes`` at a time; returns bytes written."""
    enc = Encryptor(key, oid, nonce_prefix=nonce_prefix)
    written = 0
    for piece in _reads(src, read_bytes):
        written += dst.write(enc.update(piece))
    return written + dst.write(enc.finalize())


def decrypt_stream(
    key: bytes, oid: ObjectId, src: BinaryIO, dst: BinaryIO, *, read_bytes: int = 1 << 20
) -> int:
    """Decrypt ``src`` into ``dst``; returns plaintext bytes written.

    ``dst`` may hold unauthenticated-looking prefixes of a stream that later fails
    (each written segment authenticated, but a truncated stream raises only at the
    end): write to a temporary file and keep it only when this returns.

    Raises:
        DecryptError: see the module.
    """
    dec = Decryptor(key, oid)
    written = 0
    for piece in _reads(src, read_bytes):
        written += dst.write(dec.update(piece))
    return written + dst.write(dec.finalize())


def _reads(src: BinaryIO, size: int) -> Iterable[bytes]:
    while piece := src.read(size):
        yield piece
