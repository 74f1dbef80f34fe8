"""Seal payloads to one peer with HPKE, keyed by its libp2p identity.

A peer's sealing key is its Ed25519 libp2p key converted to X25519 (the standard
birational map, done by PyNaCl which libp2p already uses), so the key that signs a
peer's messages is the key it is sealed to: no extra key exchange, nothing to trust
beyond the peer id. The ``context`` (job, round, purpose, recipient) goes into
HPKE's ``info``: a ciphertext opened under any other context fails.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from libp2p.crypto.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from libp2p.crypto.keys import PrivateKey, PublicKey

from protocols.errors import SealError

_SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.CHACHA20_POLY1305)
_PREFIX = b"distro-train/v1 seal\x00"
MAX_SEALED_BYTES = 32 * 1024


def _context(purpose: str, job_id: str, round: int, recipient: bytes) -> bytes:
    return b"\x00".join(
        [_PREFIX, purpose.encode(), job_id.encode(), str(round).encode(), recipient]
    )


def _x25519_public(key: PublicKey) -> X25519PublicKey:
    if not isinstance(key, Ed25519PublicKey):
        raise SealError("key_type", f"cannot seal to a {type(key).__name__}")
    raw = bytes(key.impl.to_curve25519_public_key())
    return X25519PublicKey.from_public_bytes(raw)


def _x25519_private(key: PrivateKey) -> X25519PrivateKey:
    if not isinstance(key, Ed25519PrivateKey):
        raise SealError("key_type", f"cannot open with a {type(key).__name__}")
    raw = bytes(key.impl.to_curve25519_private_key())
    return X25519PrivateKey.from_private_bytes(raw)


def seal(
    plaintext: bytes, recipient: PublicKey, *, purpose: str, job_id: str, round: int = 0
) -> bytes:
    """Encrypt ``plaintext`` so only the holder of ``recipient``'s private key reads it."""
    info = _context(purpose, job_id, round, recipient.serialize())
    return _SUITE.encrypt(plaintext, _x25519_public(recipient), info=info)


def unseal(
    ciphertext: bytes, key: PrivateKey, *, purpose: str, job_id: str, round: int = 0
) -> bytes:
    """Open a payload sealed to us under the same context.

    Raises:
        SealError: ``oversize`` before any work, ``not_for_us`` when the key or
            context is wrong or the bytes were altered.
    """
    if len(ciphertext) > MAX_SEALED_BYTES:
        raise SealError("oversize", f"{len(ciphertext)} bytes > {MAX_SEALED_BYTES}")
    info = _context(purpose, job_id, round, key.get_public_key().serialize())
    try:
        return _SUITE.decrypt(ciphertext, _x25519_private(key), info=info)
    except (InvalidTag, ValueError) as exc:
        raise SealError("not_for_us", type(exc).__name__) from None
