"""The owner's own data: tables, arrays, image folders and text, read and checked.

Runs on the owner's machine only (at submit, then when the job is prepared); what
leaves it is the training split, as chunks, to the trainers assigned to it. Every
problem is a :class:`~training.errors.DataError` naming the file, the row or column,
and what is wrong, raised before anything is uploaded.

Formats (the spec's ``dataset``; the ``data`` table is
:class:`training.catalogue.DataSource`):

- ``table``: CSV or Parquet (by suffix ``.csv`` / ``.parquet``) read with pyarrow. The
  target's distinct values, sorted, become the classes. Numeric features are
  standardised with the training split's mean and standard deviation (a constant
  column is only centred). Columns listed in ``categorical`` are one-hot encoded
  (categories sorted) or replaced by their category index (``encoding``); any other
  non-numeric feature is an error. Missing values (empty cells, NaN): ``missing =
  "error"`` refuses the file naming the first one; ``"drop"`` drops every row that has
  one; ``"fill"`` puts the training mean in a numeric cell and gives a categorical
  one its own category ``"<missing>"``. A row without a target is dropped by ``drop``
  and ``fill`` alike.
- ``npz``: arrays ``x`` (numeric, any sample shape, flattened to float32) and ``y``
  (integer or string labels; distinct values sorted become the classes). Loaded
  with ``allow_pickle=False``.
- ``images``: one sub-folder per class (sorted names are the classes) of PNG/JPEG
  files read with Pillow, converted to grayscale (``channels = 1``) or RGB (3),
  resized to ``image_size`` square, flattened channels-first to float32 in [0, 1].
- ``text``: a ``.txt`` file or a folder of them (read in sorted order, joined by a
  newline). Tokens are bytes (vocabulary 256, nothing to download); each sample is
  ``seq_len`` tokens and its label the byte that follows.

Splits: table, array and image samples are shuffled under the job's seed, then
``test`` and ``validation`` fractions are cut off; text is cut in order (the last
part is the test set, the part before it the validation set) so no window straddles
two splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.catalogue import DataSource
from training.errors import DataError

__all__ = ["BYTE_VOCAB", "IMAGE_SUFFIXES", "Split", "load"]

BYTE_VOCAB = 256
"""Vocabulary of the byte-level text tokenizer."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MISSING_CATEGORY = "<missing>"
_MAX_IMAGE_PIXELS = 50_000_000


@dataclass(frozen=True)
class Split:
    """The owner's data, encoded and split.

    Attributes:
        train_x, train_y: What the trainers get, as chunks (``y``: int64 classes, or
            float32 standardised targets for regression).
        val_x, val_y: Kept by the owner to check updates.
        test_x, test_y: Kept by the owner to report accuracy.
        classes: Number of classes (256 for text; 1 for regression).
        input_shape: Shape of one sample.
        info: What was read (columns, class names, statistics), for the owner's eyes.
    """

    train_x: NDArray[Any]
    train_y: NDArray[Any]
    val_x: NDArray[Any]
    val_y: NDArray[Any]
    test_x: NDArray[Any]
    test_y: NDArray[Any]
    classes: int
    input_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)


def load(
    fmt: str, src: DataSource, *, seed: int = 0, limit: int = 0, task: str = "classification"
) -> Split:
    """Read, check, encode and split the owner's data.

    Args:
        fmt: ``table``, ``npz``, ``images`` or ``text``.
        src: The spec's ``data`` table.
        seed: Shuffles the samples before the split.
        limit: Keep at most this many samples before splitting (0: all).
        task: ``classification`` or ``regression`` (tables and arrays: the target is
            then a number, standardised with the training split's mean and standard
            deviation, which ``info`` holds as ``target_mean`` and ``target_std``).

    Raises:
        DataError: naming the file, row or column and what is wrong.
    """
    path = Path(src.path).expanduser()
    if not path.exists():
        raise DataError(str(path), "", "no such file or folder")
    if fmt == "text":
        return _text(path, src, limit)
    if fmt == "table":
        from training.owntable import read_table

        regression = task == "regression"
        table = read_table(path, src, _sizes_checked([path], src), regression=regression)
        order = _order(len(table.y), seed, limit)
        tr, va, te = _cut(order, src, str(path))
        x, info = table.encode(tr)
        if regression:
            return _regression(x, table.y, (tr, va, te), info)
        classes = table.classes
        return _split(x, table.y, (tr, va, te), len(classes), {**info, "classes": classes})
    if fmt == "npz":
        x, y_raw = _npz(path, src)
        parts = _cut(_order(len(y_raw), seed, limit), src, str(path))
        if task == "regression":
            return _regression(x, _npz_targets(y_raw, str(path)), parts, {})
        y, names = _labels(y_raw, str(path))
        return _split(x, y, parts, len(names), {"classes": names})
    if fmt == "images":
        x, y, names = _images(path, src)
        parts = _cut(_order(len(y), seed, limit), src, str(path))
        return _split(x, y, parts, len(names), {"classes": names})
    raise DataError(str(path), "", f"unknown format {fmt!r}")


def _regression(
    x: NDArray[Any],
    target: NDArray[Any],
    parts: tuple[NDArray[np.int64], ...],
    info: dict[str, Any],
) -> Split:
    """Targets standardised with the training rows' statistics, as float32."""
    seen = target[parts[0]]
    mean, std = float(seen.mean()), float(seen.std()) or 1.0
    y = ((target - mean) / std).astype(np.float32)
    return _split(x, y, parts, 1, {**info, "target_mean": mean, "target_std": std})


def _npz_targets(y: NDArray[Any], where: str) -> NDArray[np.float64]:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.number):
        raise DataError(where, "y", f"regression targets must be 1-d numbers, got {y.dtype}")
    out = y.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(out))
    if len(bad):
        raise DataError(where, f"y row {int(bad[0])}", "holds NaN or Inf")
    return out


def _order(n: int, seed: int, limit: int) -> NDArray[np.int64]:
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    return order[:limit] if limit else order


def _cut(
    order: NDArray[np.int64], src: DataSource, where: str
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    n = len(order)
    n_test, n_val = int(n * src.test), int(n * src.validation)
    if n - n_test - n_val < 1 or (src.test and n_test < 1) or (src.validation and n_val < 1):
        raise DataError(where, "", f"{n} samples are too few for the splits asked")
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    return train, val, test


def _split(
    x: NDArray[Any],
    y: NDArray[Any],
    parts: tuple[NDArray[np.int64], ...],
    classes: int,
    info: dict[str, Any],
) -> Split:
    tr, va, te = parts
    return Split(x[tr], y[tr], x[va], y[va], x[te], y[te], classes, tuple(x.shape[1:]), info)


def _sizes_checked(files: list[Path], src: DataSource) -> int:
    """Total bytes of ``files``; refuses any file, or the whole, over ``max_bytes``."""
    total = 0
    for f in files:
        size = f.stat().st_size
        if size > src.max_bytes:
            raise DataError(
                str(f), "", f"{size} bytes, over the limit data.max_bytes={src.max_bytes}"
            )
        total += size
    if total > src.max_bytes:
        raise DataError(
            str(files[0].parent), "", f"{total} bytes in all, over data.max_bytes={src.max_bytes}"
        )
    return total


def _labels(raw: NDArray[Any], where: str) -> tuple[NDArray[np.int64], list[Any]]:
    """Distinct values sorted become class indices."""
    if raw.ndim != 1:
        raise DataError(where, "y", f"labels must be one per sample, got shape {raw.shape}")
    values, index = np.unique(raw, return_inverse=True)
    if len(values) < 2:
        raise DataError(where, "y", f"{len(values)} distinct label(s); classification needs 2+")
    return index.astype(np.int64), [v.item() if hasattr(v, "item") else v for v in values]


def _npz(path: Path, src: DataSource) -> tuple[NDArray[np.float32], NDArray[Any]]:
    _sizes_checked([path], src)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "x" not in z.files or "y" not in z.files:
                raise DataError(str(path), "", f"needs arrays x and y, has {sorted(z.files)[:8]}")
            x_raw, y_raw = z["x"], z["y"]
    except (OSError, ValueError) as exc:
        why = f"not a readable .npz (pickled objects are refused): {exc}"
        raise DataError(str(path), "", why) from None
    if x_raw.ndim < 1 or len(x_raw) != len(y_raw):
        raise DataError(str(path), "x", f"x {x_raw.shape} and y {y_raw.shape} do not pair up")
    if not (np.issubdtype(x_raw.dtype, np.number) or x_raw.dtype == np.bool_):
        raise DataError(str(path), "x", f"must be numeric, got {x_raw.dtype}")
    x = x_raw.reshape(len(x_raw), -1).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if len(bad):
        raise DataError(str(path), f"x row {int(bad[0])}", "holds NaN or Inf")
    return x, y_raw


def _images(
    root: Path, src: DataSource
) -> tuple[NDArray[np.float32], NDArray[np.int64], list[Any]]:
    if not root.is_dir():
        raise DataError(str(root), "", "an image dataset is a folder of class folders")
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataError(str(root), "", f"{len(classes)} class folder(s); need 2 or more")
    files: list[tuple[Path, int]] = []
    for label, folder in enumerate(classes):
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(
                str(folder), "", f"class folder has no {'/'.join(IMAGE_SUFFIXES)} images"
            )
        files += [(p, label) for p in found]
    _sizes_checked([p for p, _ in files], src)
    side, mode = src.image_size, "L" if src.channels == 1 else "RGB"
    x = np.empty((len(files), src.channels * side * side), dtype=np.float32)
    for i, (p, _) in enumerate(files):
        x[i] = _image(p, mode, side)
    y = np.array([label for _, label in files], dtype=np.int64)
    return x, y, [c.name for c in classes]


def _image(path: Path, mode: str, side: int) -> NDArray[np.float32]:
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = _MAX_IMAGE_PIXELS
    try:
        with Image.open(path) as img:
            pixels = np.asarray(img.convert(mode).resize((side, side)), dtype=np.float32)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(str(path), "", f"unreadable image: {exc}") from None
    if pixels.ndim == 3:  # height, width, channel -> channel first, as the CNN reads it
        pixels = pixels.transpose(2, 0, 1)
    return (pixels / 255.0).reshape(-1)


def _text(path: Path, src: DataSource, limit: int) -> Split:
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise DataError(str(path), "", "no .txt files in the folder")
    _sizes_checked(files, src)
    raw = b"\n".join(f.read_bytes() for f in files)
    tokens = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
    t = src.seq_len
    n = len(tokens) - t
    if limit:
        n = min(n, limit)
    test_start = len(tokens) - max(int(len(tokens) * src.test), t + 1 if src.test else 0)
    val_start = test_start - max(int(len(tokens) * src.validation), t + 1 if src.validation else 0)
    if n < 1 or val_start < t + 1:
        raise DataError(
            str(path), "", f"{len(tokens)} bytes are too few for seq_len={t} and the splits"
        )

    def windows(lo: int, hi: int, most: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        if hi - lo < t + 1:
            return np.empty((0, t), np.int64), np.empty(0, np.int64)
        w = np.lib.stride_tricks.sliding_window_view(tokens[lo:hi], t + 1)[:most]
        return np.ascontiguousarray(w[:, :t]), np.ascontiguousarray(w[:, t])

    train = windows(0, val_start, n)
    val = windows(val_start, test_start, max(1, math.ceil(n * src.validation)))
    test = windows(test_start, len(tokens), max(1, math.ceil(n * src.test)))
    info = {"files": [str(f) for f in files], "bytes": len(raw)}
    return Split(*train, *val, *test, BYTE_VOCAB, (t,), info)
