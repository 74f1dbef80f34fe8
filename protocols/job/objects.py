"""What each stored object of a job is, and its key: the confidential data plane's vocabulary.

The owner and the trainer name every object the same way (an
``storage.crypto.ObjectId``, bound into its ciphertext), so a ciphertext moved to
another object's place does not decrypt. Keys:

- chunks and global models: derived per object from the owner's job key, which
  never leaves the owner's job store; a trainer receives, sealed to it, the keys of
  exactly the chunks of its slot and of the round's model;
- updates: a fresh random key per update, chosen by the trainer and sealed to the
  owner in its announcement.

A chunk is encrypted deterministically (its key names its plaintext hash), so the
chunks of a job stay content-addressed and deduplicated (``storage.chunks``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from storage import crypto
from storage.crypto import ObjectId

KEY_BYTES = crypto.KEY_BYTES
#: The HPKE purpose of an update's key sealed to the owner (``protocols.seal``).
UPDATE_KEY_PURPOSE = "update-key"


def chunk_id(job_id: str, plain_sha256: str) -> ObjectId:
    """A chunk of ``job_id``'s data, named by its plaintext hash."""
    return ObjectId("chunk", job_id, 0, plain_sha256)


def model_id(job_id: str, round_no: int, plain_sha256: str) -> ObjectId:
    """The global model after ``round_no`` (0: the initial model)."""
    return ObjectId("model", job_id, round_no, plain_sha256)


def model_delta_id(job_id: str, round_no: int, plain_sha256: str) -> ObjectId:
    """The delta that rebuilds the global model after ``round_no`` from the one before.

    It is sealed under that model's own key (a trainer given the model's key may
    read it; the delta tells nothing the model does not).
    """
    return ObjectId("model-delta", job_id, round_no, plain_sha256)


def update_id(job_id: str, round_no: int, trainer: str) -> ObjectId:
    """The update of ``trainer`` (base58 peer id) for ``round_no``."""
    return ObjectId("update", job_id, round_no, trainer)


@dataclass(frozen=True)
class JobKey:
    """The owner's key of one encrypted job; derives every per-object key."""

    job_id: str
    secret: bytes

    def blind(self, plain_sha256: str) -> str:
        """A name for an object key that does not reveal ``plain_sha256`` (keyed hash).

        Object keys are visible to the storage operator; a plaintext hash there
        would let it confirm a guess of the content.
        """
        mac = hmac.new(self.secret, b"name\x00" + plain_sha256.encode(), hashlib.sha256)
        return mac.hexdigest()

    def chunk_key(self, plain_sha256: str) -> bytes:
        """The key of the chunk whose plaintext hashes to ``plain_sha256``."""
        return crypto.derive_key(self.secret, chunk_id(self.job_id, plain_sha256))

    def model_key(self, round_no: int, plain_sha256: str) -> bytes:
        """The key of the global model after ``round_no``."""
        return crypto.derive_key(self.secret, model_id(self.job_id, round_no, plain_sha256))

    def seal_chunk(self, data: bytes, plain_sha256: str) -> bytes:
        """Encrypt a chunk deterministically (same plaintext, same ciphertext)."""
        key = self.chunk_key(plain_sha256)
        oid = chunk_id(self.job_id, plain_sha256)
        return crypto.encrypt(key, oid, data, nonce_prefix=crypto.derived_prefix(key))

    def seal_model(self, round_no: int, data: bytes, plain_sha256: str) -> bytes:
        """Encrypt the global model after ``round_no``."""
        key = self.model_key(round_no, plain_sha256)
        return crypto.encrypt(key, model_id(self.job_id, round_no, plain_sha256), data)

    def seal_model_delta(self, round_no: int, delta: bytes, plain_sha256: str) -> bytes:
        """Encrypt the delta to the global model after ``round_no`` under that model's key."""
        key = self.model_key(round_no, plain_sha256)
        return crypto.encrypt(key, model_delta_id(self.job_id, round_no, plain_sha256), delta)

    def open_model(self, round_no: int, sealed: bytes, plain_sha256: str) -> bytes:
        """Decrypt a stored global model (raises ``storage.crypto.DecryptError``)."""
        key = self.model_key(round_no, plain_sha256)
        return crypto.decrypt(key, model_id(self.job_id, round_no, plain_sha256), sealed)
