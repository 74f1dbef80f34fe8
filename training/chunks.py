"""Dataset chunks: a bounded number of samples as safetensors bytes (never pickle).

A chunk holds exactly two tensors, ``x`` (float32 features, uint8 features or int64
tokens, shape ``(n, *sample_shape)``) and ``y`` (int64 labels or float32 regression
targets, shape ``(n,)``). uint8 features are 8-bit data kept in their native dtype
(MNIST's pixels): a quarter of float32's bytes in chunks and in memory, read by a float
model as ``value / 255`` (:data:`UINT8_SCALE`), batch by batch. :func:`decode_chunk`
checks the size bound before parsing and the names, dtypes, shapes, label range and
finiteness after; :func:`decode_into` decodes a task's chunks one after another into
one array, so no chunk's samples are held twice.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import save as _st_save

import distro_json
from training.errors import ChunkError
from training.tensorfile import Entry, TensorFileError, read_header

DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024
"""Default bound for one chunk (4,000 MNIST samples are ~3.1 MB as uint8)."""

UINT8_SCALE = 1 / 255
"""What a float model multiplies uint8 features by (8-bit pixels to [0, 1])."""

_X_DTYPES = {"F32": np.float32, "I64": np.int64, "U8": np.uint8}
_STORED: dict[str, np.dtype[np.generic]] = {
    "F32": np.dtype("<f4"), "I64": np.dtype("<i8"), "U8": np.dtype("u1")}
"""How a chunk's bytes hold each dtype (safetensors is little-endian)."""
_FEATURES = ("F32", "U8")
"""Stored forms of a float model's features."""


def encode_chunk(x: NDArray[np.generic], y: NDArray[np.generic]) -> bytes:
    """Encode samples ``x`` and labels ``y`` as one chunk.

    Raises:
        ChunkError: ``shape`` when lengths differ, ``dtype`` when ``x`` is not float32,
            uint8 or int64 or ``y`` is not an integer array.
    """
    if x.dtype not in (np.float32, np.uint8, np.int64):
        raise ChunkError("dtype", f"x must be float32, uint8 or int64, got {x.dtype}")
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.float32):
        raise ChunkError("dtype", f"y must be integers or float32, got {y.dtype}")
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise ChunkError("shape", f"x {x.shape} and y {y.shape} do not pair up")
    y_dtype = np.float32 if y.dtype == np.float32 else np.int64
    tensors = {"x": np.ascontiguousarray(x), "y": np.ascontiguousarray(y, dtype=y_dtype)}
    return bytes(_st_save(tensors))


def decode_chunk(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    sample_shape: tuple[int, ...] | None = None,
    x_dtype: str | None = None,
    classes: int | None = None,
    y_dtype: str = "int64",
) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
    """Decode and validate untrusted chunk bytes.

    Args:
        data: Chunk bytes.
        max_bytes: Size bound, checked before parsing.
        sample_shape: When given, every sample must have this shape.
        x_dtype: When given, the model's input dtype: ``"float32"`` (``x`` stored as
            float32 or uint8 features) or ``"int64"`` (tokens).
        classes: When given, every label must be in ``[0, classes)``; labels must be
            non-negative in any case.
        y_dtype: ``"int64"`` class labels (the default) or ``"float32"`` finite
            regression targets that ``y`` must have.

    Returns:
        ``(x, y)`` numpy arrays (writable copies; ``x`` in its stored dtype).

    Raises:
        ChunkError: reason ``oversize``, ``malformed``, ``names``, ``dtype``, ``shape``,
            ``labels`` or ``non_finite``.
    """
    _check_header(data, max_bytes, sample_shape, x_dtype, y_dtype)
    vx, vy = _load(data)
    _check_values(vx, vy, classes, y_dtype)
    return np.array(vx), np.array(vy)


def decode_into(
    chunks: Sequence[bytes],
    *,
    max_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    sample_shape: tuple[int, ...] | None = None,
    x_dtype: str | None = None,
    classes: int | None = None,
    y_dtype: str = "int64",
    release: bool = False,
) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
    """Decode a task's chunks, checked as :func:`decode_chunk`, into one ``(x, y)``.

    Every header is checked first, so the result is allocated once at its final
    size; then each chunk's tensors are read in place (views of its bytes, no copy)
    and copied into the result in turn. Memory beyond the chunks themselves: the
    result. ``release`` with a list: each entry is replaced by ``b""`` once copied, so
    a caller whose list holds the only reference lets every chunk go as it is decoded.

    Raises:
        ChunkError: As :func:`decode_chunk`; ``dtype`` also when the chunks store
            ``x`` in different dtypes, ``shape`` when there are no samples.
    """
    heads = [_check_header(c, max_bytes, sample_shape, x_dtype, y_dtype) for c in chunks]
    if len({hx.dtype for hx, _ in heads}) > 1 or len({hx.shape[1:] for hx, _ in heads}) > 1:
        raise ChunkError("dtype", "the chunks store their samples in different forms")
    n = sum(hx.shape[0] for hx, _ in heads)
    if n == 0:
        raise ChunkError("shape", "no training samples")
    hx, hy = heads[0]
    x = np.empty((n, *hx.shape[1:]), dtype=_X_DTYPES[hx.dtype])
    y = np.empty(n, dtype=np.float32 if hy.dtype == "F32" else np.int64)
    at = 0
    for i in range(len(chunks)):
        vx, vy = _load(chunks[i])
        _check_values(vx, vy, classes, y_dtype)
        x[at : at + len(vy)], y[at : at + len(vy)] = vx, vy
        at += len(vy)
        del vx, vy  # the views hold the chunk: gone with them, before the next is read
        if release and isinstance(chunks, list):
            chunks[i] = b""
    return x, y


def _check_header(
    data: bytes,
    max_bytes: int,
    sample_shape: tuple[int, ...] | None,
    x_dtype: str | None,
    y_dtype: str,
) -> tuple[Entry, Entry]:
    """The checked header entries of ``x`` and ``y`` (nothing parsed beyond the header)."""
    try:
        header = read_header(data, max_bytes=max_bytes)
    except TensorFileError as exc:
        raise ChunkError(exc.reason, exc.detail) from None
    if set(header) != {"x", "y"}:
        raise ChunkError("names", f"expected tensors x and y, got {sorted(header)[:5]}")
    hx, hy = header["x"], header["y"]
    want_y = "F32" if y_dtype == "float32" else "I64"
    if hx.dtype not in _X_DTYPES or hy.dtype != want_y:
        raise ChunkError("dtype", f"x {hx.dtype}, y {hy.dtype}: want x F32|U8|I64 and y {want_y}")
    if x_dtype is not None and (hx.dtype in _FEATURES) != (np.dtype(x_dtype) == np.float32):
        raise ChunkError("dtype", f"x is {hx.dtype}, model wants {x_dtype}")
    if len(hx.shape) < 1 or len(hy.shape) != 1 or hx.shape[0] != hy.shape[0]:
        raise ChunkError("shape", f"x {hx.shape} and y {hy.shape} do not pair up")
    if sample_shape is not None and hx.shape[1:] != tuple(sample_shape):
        raise ChunkError("shape", f"samples are {hx.shape[1:]}, want {tuple(sample_shape)}")
    return hx, hy


def _load(data: bytes) -> tuple[NDArray[np.generic], NDArray[np.generic]]:
    """Read-only ``x`` and ``y`` of a chunk whose header was checked: views of ``data``.

    The check (``training.tensorfile.read_header``) bounds every tensor's offsets inside
    the blob and its length to its shape and dtype, so the views need no further check.
    """
    (size,) = struct.unpack("<Q", bytes(data[:8]))
    header: dict[str, Any] = distro_json.loads(bytes(data[8 : 8 + size]))

    def view(name: str) -> NDArray[np.generic]:
        info = header[name]
        start, end = info["data_offsets"]
        dtype = _STORED[info["dtype"]]
        flat = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize,
                             offset=8 + size + start)
        shaped: NDArray[np.generic] = flat.reshape(info["shape"])
        return shaped

    return view("x"), view("y")


def _check_values(
    x: NDArray[np.generic], y: NDArray[np.generic], classes: int | None, y_dtype: str
) -> None:
    if y_dtype == "float32":
        if not np.isfinite(y).all():
            raise ChunkError("non_finite", "y holds NaN or Inf")
    elif y.size and (y.min() < 0 or (classes is not None and y.max() >= classes)):
        raise ChunkError("labels", f"labels span [{y.min()}, {y.max()}], classes={classes}")
    if x.dtype == np.float32 and not np.isfinite(x).all():
        raise ChunkError("non_finite", "x holds NaN or Inf")


def make_chunks(x: NDArray[np.generic], y: NDArray[np.generic], max_samples: int) -> list[bytes]:
    """Split ``(x, y)`` in order into chunks of at most ``max_samples`` samples.

    Raises:
        ValueError: ``max_samples`` < 1.
        ChunkError: As :func:`encode_chunk`.
    """
    if max_samples < 1:
        raise ValueError("max_samples must be >= 1")
    return [
        encode_chunk(x[i : i + max_samples], y[i : i + max_samples])
        for i in range(0, len(y), max_samples)
    ]
