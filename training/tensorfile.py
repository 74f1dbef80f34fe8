"""Checked safetensors reading shared by weights and dataset chunks.

The safetensors header is parsed and checked here (size bound, JSON shape, dtypes,
offsets that tile the buffer exactly) *before* the library touches the bytes, so a
hostile blob gives a typed error with a reason code, never a crash or a huge
allocation.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import distro_json

ITEM_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
_MAX_HEADER = 1 << 20
_MAX_TENSORS = 4096


class TensorFileError(ValueError):
    """Internal: a header is bad; callers turn it into their own typed error.

    Attributes:
        reason: ``oversize`` or ``malformed``.
        detail: Human-readable detail.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Entry:
    """One tensor described by a checked header.

    Attributes:
        dtype: Safetensors dtype code (``"F32"``, ``"I64"``...).
        shape: Tensor shape.
    """

    dtype: str
    shape: tuple[int, ...]


def read_header(data: bytes, *, max_bytes: int) -> dict[str, Entry]:
    """Check a safetensors blob's size and header and describe its tensors.

    Args:
        data: The whole blob.
        max_bytes: Refuse blobs longer than this, before any parsing.

    Returns:
        Tensor name -> :class:`Entry`, for every tensor (``__metadata__`` excluded).

    Raises:
        TensorFileError: ``oversize`` when over ``max_bytes``, ``malformed`` for anything
            else wrong (truncated, bad JSON, unknown dtype, offsets out of range or
            overlapping, trailing bytes).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TensorFileError("malformed", f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise TensorFileError("oversize", f"{len(data)} bytes > limit {max_bytes}")
    if len(data) < 8:
        raise TensorFileError("malformed", "shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", bytes(data[:8]))
    if header_len > min(_MAX_HEADER, len(data) - 8):
        raise TensorFileError("malformed", f"header length {header_len} out of range")
    try:
        header = distro_json.loads(bytes(data[8 : 8 + header_len]))
    except ValueError as exc:
        raise TensorFileError("malformed", f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or len(header) > _MAX_TENSORS:
        raise TensorFileError("malformed", "header must be an object of at most 4096 tensors")
    body = len(data) - 8 - header_len
    entries: dict[str, Entry] = {}
    spans: list[tuple[int, int]] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        entry, span = _check_entry(name, info, body)
        entries[name] = entry
        spans.append(span)
    spans.sort()
    cursor = 0
    for start, end in spans:
        if start != cursor:
            raise TensorFileError("malformed", "tensor data has gaps or overlaps")
        cursor = end
    if cursor != body:
        raise TensorFileError("malformed", f"{body - cursor} unexplained trailing bytes")
    return entries


def _check_entry(name: str, info: object, body: int) -> tuple[Entry, tuple[int, int]]:
    if not isinstance(info, dict):
        raise TensorFileError("malformed", f"{name}: entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in ITEM_SIZES:
        raise TensorFileError("malformed", f"{name}: unsupported dtype {dtype!r}")
    if not (isinstance(shape, list) and len(shape) <= 8):
        raise TensorFileError("malformed", f"{name}: bad shape")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise TensorFileError("malformed", f"{name}: bad shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2):
        raise TensorFileError("malformed", f"{name}: bad data_offsets")
    start, end = offsets
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in offsets):
        raise TensorFileError("malformed", f"{name}: bad data_offsets {offsets!r}")
    if not 0 <= start <= end <= body:
        raise TensorFileError("malformed", f"{name}: data_offsets out of range")
    if end - start != math.prod(shape) * ITEM_SIZES[dtype]:
        raise TensorFileError("malformed", f"{name}: data length does not match shape")
    return Entry(dtype, tuple(shape)), (start, end)
