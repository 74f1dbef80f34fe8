"""The object encryption format: round trips, identity binding, tamper and truncation."""

from __future__ import annotations

import io

import pytest

from storage import crypto
from storage.crypto import DecryptError, ObjectId

OID = ObjectId("model", "job-1", 3, "ab" * 32)
SEG = 1 << crypto.DEFAULT_SEGMENT_LOG2


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 17])
def test_round_trip_in_memory_and_streaming_agree(size: int) -> None:
    key, data = crypto.new_key(), bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    prefix = b"1234567"
    sealed = crypto.encrypt(key, OID, data, nonce_prefix=prefix)
    assert len(sealed) == crypto.sealed_size(size)
    out = io.BytesIO()
    crypto.encrypt_stream(key, OID, io.BytesIO(data), out, nonce_prefix=prefix, read_bytes=4093)
    assert out.getvalue() == sealed
    assert crypto.decrypt(key, OID, sealed) == data
    plain = io.BytesIO()
    crypto.decrypt_stream(key, OID, io.BytesIO(sealed), plain, read_bytes=7919)
    assert plain.getvalue() == data


def test_other_identity_or_key_does_not_decrypt() -> None:
    key = crypto.new_key()
    sealed = crypto.encrypt(key, OID, b"weights")
    for other in (
        ObjectId("model", "job-1", 4, OID.name),
        ObjectId("update", "job-1", 3, OID.name),
        ObjectId("model", "job-2", 3, OID.name),
    ):
        with pytest.raises(DecryptError) as err:
            crypto.decrypt(key, other, sealed)
        assert err.value.reason == "undecryptable" and err.value.detail == "tampered"
    with pytest.raises(DecryptError):
        crypto.decrypt(crypto.new_key(), OID, sealed)


def test_tampering_truncation_and_reordering_are_refused() -> None:
    key, data = crypto.new_key(), b"z" * (2 * SEG + 5)
    sealed = crypto.encrypt(key, OID, data)
    flipped = bytearray(sealed)
    flipped[len(sealed) // 2] ^= 1
    cases = {
        "tampered": bytes(flipped),
        "truncated": sealed[: crypto.HEADER_BYTES + 3],
        "bad_header": b"XXXX" + sealed[4:],
    }
    for detail, bad in cases.items():
        with pytest.raises(DecryptError) as err:
            crypto.decrypt(key, OID, bad)
        assert err.value.detail == detail
    # Dropping the last segment leaves a non-last segment at the end: refused.
    seg = SEG + crypto.TAG_BYTES
    with pytest.raises(DecryptError):
        crypto.decrypt(key, OID, sealed[: crypto.HEADER_BYTES + 2 * seg])
    dec = crypto.Decryptor(key, OID)
    dec.update(sealed)
    dec.finalize()
    with pytest.raises(DecryptError) as err:
        dec.update(b"more")
    assert err.value.detail == "trailing_data"


def test_derived_keys_are_per_object_and_deterministic() -> None:
    job_key = crypto.new_key()
    a = crypto.derive_key(job_key, ObjectId("chunk", "j", 0, "a" * 64))
    b = crypto.derive_key(job_key, ObjectId("chunk", "j", 0, "b" * 64))
    assert a != b and a == crypto.derive_key(job_key, ObjectId("chunk", "j", 0, "a" * 64))
    assert crypto.derived_prefix(a) != crypto.derived_prefix(b)


def test_max_sealed_size_bounds_every_segment_size() -> None:
    for size in (0, 1, 1023, 1024, 5 * 1024 * 1024 + 3):
        assert crypto.sealed_size(size) <= crypto.max_sealed_size(size)
        assert crypto.max_sealed_size(size) <= crypto.HEADER_BYTES + size + size // 64 + 16
