"""decode_into reads each chunk's tensors in place: no copy of a chunk beyond the result
(issue 17), and damaged chunks are still refused as ChunkError."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from training.chunks import decode_chunk, decode_into, make_chunks
from training.errors import ChunkError

CHUNK = 2000
SAMPLE = (784,)


def _data(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return (rng.integers(0, 256, (n, *SAMPLE), dtype=np.uint8),
            rng.integers(0, 10, n).astype(np.int64))


def test_decode_allocates_the_result_and_no_chunk_copy() -> None:
    x, y = _data(5 * CHUNK)
    chunks = make_chunks(x, y, CHUNK)
    result = x.nbytes + y.nbytes
    tracemalloc.start()
    try:
        dx, dy = decode_into(chunks, sample_shape=SAMPLE, x_dtype="float32", classes=10,
                             release=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(dx, x) and np.array_equal(dy, y)
    assert chunks == [b""] * 5
    # A copy of one chunk's samples (what safetensors' loader made) is 1.5 MiB.
    assert peak - result < x[:CHUNK].nbytes // 4, (peak, result)


def test_decoded_chunk_is_a_writable_copy_with_the_stored_values() -> None:
    x, y = _data(10)
    dx, dy = decode_chunk(make_chunks(x, y, 10)[0], sample_shape=SAMPLE, classes=10)
    assert dx.flags.writeable and dy.flags.writeable
    assert np.array_equal(dx, x) and dy.dtype == np.int64 and np.array_equal(dy, y)


@pytest.mark.parametrize("cut", [7, 100, -1])
def test_truncated_or_padded_chunks_are_refused(cut: int) -> None:
    x, y = _data(10)
    blob = make_chunks(x, y, 10)[0]
    for bad in (blob[:cut], blob + b"\0" * abs(cut)):
        with pytest.raises(ChunkError):
            decode_into([bad], sample_shape=SAMPLE, classes=10)
