"""The global model as a lossless delta against the one a trainer already holds.

Two global models of one job are safetensors files of the same layout, so their
headers are equal and their tensors line up byte for byte. :func:`encode` XORs the
two files, regroups the XOR by byte position within each 4-byte word (the sign and
exponent bytes of neighbouring float32 values mostly agree, so their planes are
nearly all zero) and deflates the result. :func:`apply` undoes it exactly: the model
rebuilt is bit for bit the new one, so its sha256, the model's identity, is
unchanged and the trainer checks it as it checks a model fetched whole.

Torch-free (numpy and zlib), so both roles can use it without loading torch.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from training.errors import TrainingError

MAGIC = b"DTD1"
_HEADER = struct.Struct("<4sQ")
LEVEL = 6


class DeltaError(TrainingError):
    """A model delta that does not apply to the base it names.

    Attributes:
        detail: What is wrong.
    """

    reason = "bad_model_delta"

    def __init__(self, detail: str) -> None:
        super().__init__(f"model delta refused: {detail}")
        self.detail = detail


def _planes(data: bytes) -> np.ndarray:
    """``data`` padded to whole 4-byte words, as a 4 x words byte array."""
    pad = (-len(data)) % 4
    return np.frombuffer(data + b"\0" * pad, dtype=np.uint8).reshape(-1, 4).T


def encode(base: bytes, new: bytes) -> bytes | None:
    """The delta that turns ``base`` into ``new``; None when the two differ in length.

    The caller sends it only where it is smaller than ``new`` itself.
    """
    if len(base) != len(new):
        return None
    xor = np.bitwise_xor(_planes(base), _planes(new))
    return _HEADER.pack(MAGIC, len(new)) + zlib.compress(xor.tobytes(), LEVEL)


def apply(base: bytes, delta: bytes) -> bytes:
    """The model ``delta`` makes of ``base`` (untrusted delta; blocking).

    Decompression is bounded by ``base``'s size: a delta cannot inflate past it.

    Raises:
        DeltaError: not a delta, made for a base of another size, or corrupt.
    """
    if len(delta) < _HEADER.size:
        raise DeltaError("shorter than its header")
    magic, size = _HEADER.unpack_from(delta)
    if magic != MAGIC or size != len(base):
        raise DeltaError("not a delta for a base of this size")
    words = (size + 3) // 4
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(delta[_HEADER.size :], 4 * words)
    except zlib.error as exc:
        raise DeltaError(f"corrupt: {exc}") from None
    if len(raw) != 4 * words or inflater.unconsumed_tail or not inflater.eof:
        raise DeltaError("length does not match its base")
    xor = np.frombuffer(raw, dtype=np.uint8).reshape(4, words)
    model: bytes = np.bitwise_xor(_planes(base), xor).T.tobytes()
    return model[:size]
