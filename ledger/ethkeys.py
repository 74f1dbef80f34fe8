"""Ethereum keys and signatures without eth_account: what a daemon's wallet needs.

Every daemon with a ``[ledger]`` signs its wallet binding, checks each receipt's
EIP-712 signature, reads the contract and sends one kind of transaction (a trainer's
``redeem``, ``ledger.lighttx``). eth_account and eth_utils (with eth_abi, rlp, py_ecc,
cytoolz, regex and pydantic models) cost a trainer ~15 MiB resident for as long as it
lives (issue 17); these few functions do the same with what libp2p already loads:
libsecp256k1 through ``coincurve`` and pycryptodome's keccak.

- Signatures are 65 bytes ``r || s || v`` with ``v`` 27 or 28, what the contract's
  ``ecrecover`` takes. Signing is RFC 6979 deterministic with a low ``s``, byte for
  byte what eth_account produces (``tests/ledger/test_ethkeys.py`` compares them).
- Addresses are text: ``0x`` and 40 hex digits (the prefix optional on input, any
  case; a mixed-case input is not checked against its checksum, as eth_utils does
  not); out, EIP-55 checksummed.
- :func:`legacy_transaction` signs an EIP-155 legacy transaction (RLP by hand).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import coincurve
from Crypto.Hash import keccak as _keccak

_HEX_ADDRESS = re.compile("(0x)?[0-9a-f]{40}", re.IGNORECASE | re.ASCII)
_PERSONAL = b"\x19Ethereum Signed Message:\n"
V_OFFSET = 27
"""``v`` of a signature is the public key's recovery id plus this."""


def keccak256(data: bytes) -> bytes:
    """Ethereum's keccak-256 (the pre-standard padding, not hashlib's sha3_256)."""
    return bytes(_keccak.new(digest_bits=256, data=data).digest())


def is_address(value: object) -> bool:
    """Whether ``value`` is an address as text: optional ``0x``, then 40 hex digits."""
    return isinstance(value, str) and _HEX_ADDRESS.fullmatch(value) is not None


def to_checksum_address(value: str) -> str:
    """``value`` in EIP-55 mixed case with its ``0x``.

    Raises:
        ValueError: ``value`` is not an address (:func:`is_address`).
    """
    if not is_address(value):
        raise ValueError(f"not an address: {str(value)[:80]!r}")
    digits = value.lower().removeprefix("0x")
    mask = keccak256(digits.encode()).hex()[:40]
    return "0x" + "".join(c.upper() if int(m, 16) >= 8 else c
                          for c, m in zip(digits, mask, strict=True))


def _address(public: coincurve.PublicKey) -> str:
    return to_checksum_address(keccak256(public.format(compressed=False)[1:])[-20:].hex())


def address_of(key: bytes) -> str:
    """The checksummed address of the 32-byte secp256k1 private ``key``.

    Raises:
        ValueError: ``key`` is not a valid private key (0, or not below the group order).
    """
    return _address(coincurve.PrivateKey(key).public_key)


def sign_hash(key: bytes, digest: bytes) -> bytes:
    """The 65-byte signature of the 32-byte ``digest`` with ``key``."""
    sig = coincurve.PrivateKey(key).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([V_OFFSET + sig[64]])


def recover_hash(digest: bytes, signature: bytes) -> str:
    """The checksummed address whose key signed ``digest``.

    Raises:
        ValueError: a signature of the wrong length, a ``v`` other than 27/28, an ``r``
            or ``s`` out of range, or one from which no key can be recovered.
    """
    if len(digest) != 32 or len(signature) != 65 or signature[64] - V_OFFSET not in (0, 1):
        raise ValueError("a signature is 65 bytes with v 27 or 28, over a 32-byte digest")
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([signature[64] - V_OFFSET]), digest, hasher=None)
    except Exception as exc:  # noqa: BLE001 - libsecp256k1 refusals come as several types
        raise ValueError(f"no key recovers from this signature: {exc}") from None
    return _address(public)


def personal_hash(text: str) -> bytes:
    """The EIP-191 (``personal_sign``, version ``E``) digest of ``text``."""
    data = text.encode()
    return keccak256(_PERSONAL + str(len(data)).encode() + data)


def _length(n: int, offset: int) -> bytes:
    if n < 56:
        return bytes([offset + n])
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(size)]) + size


def rlp(item: bytes | int | Sequence[bytes | int]) -> bytes:
    """The RLP encoding of bytes, an unsigned int (big-endian, no leading zeros) or a list."""
    if isinstance(item, int):
        if item < 0:
            raise ValueError("RLP encodes unsigned integers only")
        item = item.to_bytes((item.bit_length() + 7) // 8, "big")
    if isinstance(item, bytes):
        if len(item) == 1 and item[0] < 0x80:
            return item
        return _length(len(item), 0x80) + item
    body = b"".join(rlp(x) for x in item)
    return _length(len(body), 0xC0) + body


def legacy_transaction(key: bytes, *, nonce: int, gas_price: int, gas: int, to: str,
                       value: int, data: bytes, chain_id: int) -> tuple[bytes, bytes]:
    """An EIP-155 legacy transaction signed with ``key``: ``(raw bytes, its hash)``."""
    fields: list[bytes | int] = [nonce, gas_price, gas,
                                 bytes.fromhex(to_checksum_address(to)[2:]), value, data]
    sig = coincurve.PrivateKey(key).sign_recoverable(
        keccak256(rlp([*fields, chain_id, 0, 0])), hasher=None)
    v = sig[64] + 35 + 2 * chain_id
    raw = rlp([*fields, v, int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")])
    return raw, keccak256(raw)
