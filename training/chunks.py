"""Dataset chunks: a bounded number of samples as safetensors bytes (never pickle).

A chunk holds exactly two tensors, ``x`` (float32 features or int64 tokens, shape
``(n, *sample_shape)``) and ``y`` (int64 labels or float32 regression targets, shape
``(n,)``). :func:`decode_chunk`
checks the size bound before parsing and the names, dtypes, shapes, label range and
finiteness after.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from training.errors import ChunkError
from training.tensorfile import TensorFileError, read_header

DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024
"""Default bound for one chunk (4,000 MNIST samples are ~12.6 MB)."""

_X_DTYPES = {"F32": np.float32, "I64": np.int64}


def encode_chunk(x: NDArray[np.generic], y: NDArray[np.generic]) -> bytes:
    """Encode samples ``x`` and labels ``y`` as one chunk.

    Raises:
        ChunkError: ``shape`` when lengths differ, ``dtype`` when ``x`` is not float32 or
            int64 or ``y`` is not an integer array.
    """
    if x.dtype not in (np.float32, np.int64):
        raise ChunkError("dtype", f"x must be float32 or int64, got {x.dtype}")
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
        x_dtype: When given, ``"float32"`` or ``"int64"`` that ``x`` must have.
        classes: When given, every label must be in ``[0, classes)``; labels must be
            non-negative in any case.
        y_dtype: ``"int64"`` class labels (the default) or ``"float32"`` finite
            regression targets that ``y`` must have.

    Returns:
        ``(x, y)`` numpy arrays (writable copies).

    Raises:
        ChunkError: reason ``oversize``, ``malformed``, ``names``, ``dtype``, ``shape``,
            ``labels`` or ``non_finite``.
    """
    try:
        header = read_header(data, max_bytes=max_bytes)
    except TensorFileError as exc:
        raise ChunkError(exc.reason, exc.detail) from None
    if set(header) != {"x", "y"}:
        raise ChunkError("names", f"expected tensors x and y, got {sorted(header)[:5]}")
    hx, hy = header["x"], header["y"]
    want_y = "F32" if y_dtype == "float32" else "I64"
    if hx.dtype not in _X_DTYPES or hy.dtype != want_y:
        raise ChunkError("dtype", f"x {hx.dtype}, y {hy.dtype}: want x F32|I64 and y {want_y}")
    if x_dtype is not None and np.dtype(_X_DTYPES[hx.dtype]) != np.dtype(x_dtype):
        raise ChunkError("dtype", f"x is {hx.dtype}, model wants {x_dtype}")
    if len(hx.shape) < 1 or len(hy.shape) != 1 or hx.shape[0] != hy.shape[0]:
        raise ChunkError("shape", f"x {hx.shape} and y {hy.shape} do not pair up")
    if sample_shape is not None and hx.shape[1:] != tuple(sample_shape):
        raise ChunkError("shape", f"samples are {hx.shape[1:]}, want {tuple(sample_shape)}")
    try:
        arrays = _st_load(bytes(data))
    except Exception as exc:  # noqa: BLE001 - the library's error types are not public API
        raise ChunkError("malformed", f"safetensors refused the blob: {exc}") from None
    x, y = np.array(arrays["x"]), np.array(arrays["y"])
    if want_y == "F32":
        if not np.isfinite(y).all():
            raise ChunkError("non_finite", "y holds NaN or Inf")
    elif y.size and (y.min() < 0 or (classes is not None and y.max() >= classes)):
        raise ChunkError("labels", f"labels span [{y.min()}, {y.max()}], classes={classes}")
    if x.dtype == np.float32 and not np.isfinite(x).all():
        raise ChunkError("non_finite", "x holds NaN or Inf")
    return x, y


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
