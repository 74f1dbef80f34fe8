"""Write the example jobs' data files from bundled sources (nothing is downloaded).

    python examples/make_data.py [--out examples/data] [--images-per-class N]

- ``wine.csv``: scikit-learn's wine table (178 rows, 13 numeric measurements, 3
  cultivars as ``cultivar``), plus a categorical column ``colour_band`` (low, mid,
  high colour intensity) to show one-hot encoding, and a few empty cells to show
  ``missing = "fill"``.
- ``diabetes.csv``: scikit-learn's diabetes table (442 rows, 10 standardised
  measurements) with the disease progression a year later as ``progression``.
- ``digits/``: scikit-learn's 8x8 digits as PNG files, one folder per digit.
- ``corpus.txt``: sentences from a fixed grammar (seeded), for next-byte modelling.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

_WORDS = {
    "det": ["the", "a", "every", "some"],
    "adj": ["quick", "lazy", "small", "bright", "quiet", "old"],
    "noun": ["fox", "dog", "bird", "cat", "river", "tree", "child"],
    "verb": ["sees", "jumps over", "follows", "likes", "finds"],
}


def write_table(out: Path) -> Path:
    """Write ``wine.csv`` with pyarrow; returns its path."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from sklearn.datasets import load_wine

    bunch = load_wine()
    cols: dict[str, list[object]] = {
        name.replace("/", "_"): bunch.data[:, i].tolist()
        for i, name in enumerate(bunch.feature_names)
    }
    colour = bunch.data[:, list(bunch.feature_names).index("color_intensity")]
    cuts = np.quantile(colour, [1 / 3, 2 / 3])
    cols["colour_band"] = [["low", "mid", "high"][int(np.searchsorted(cuts, c))] for c in colour]
    for row in (5, 50, 120):  # a few gaps, filled by the job's ``missing = "fill"``
        cols["magnesium"][row] = None
    cols["cultivar"] = [f"cultivar_{int(t)}" for t in bunch.target]
    path = out / "wine.csv"
    pacsv.write_csv(pa.table(cols), path)
    return path


def write_regression_table(out: Path) -> Path:
    """Write ``diabetes.csv`` (scikit-learn's diabetes table, target ``progression``)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    cols = {name: bunch.data[:, i].tolist() for i, name in enumerate(bunch.feature_names)}
    cols["progression"] = bunch.target.tolist()
    path = out / "diabetes.csv"
    pacsv.write_csv(pa.table(cols), path)
    return path


def write_images(out: Path, per_class: int = 0) -> Path:
    """Write the digits as PNG class folders; returns the folder."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    root = out / "digits"
    counts: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        if per_class and counts.get(int(label), 0) >= per_class:
            continue
        counts[int(label)] = counts.get(int(label), 0) + 1
        folder = root / f"digit_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{i}.png")
    return root


def write_text(out: Path, sentences: int = 3000) -> Path:
    """Write a generated corpus; returns its path."""
    rng = np.random.default_rng(0)

    def pick(kind: str) -> str:
        return _WORDS[kind][int(rng.integers(len(_WORDS[kind])))]

    lines = [
        f"{pick('det')} {pick('adj')} {pick('noun')} {pick('verb')} {pick('det')} {pick('noun')}."
        for _ in range(sentences)
    ]
    path = out / "corpus.txt"
    path.write_text(" ".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Write every example data set."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    ap.add_argument("--images-per-class", type=int, default=0, help="0: all (about 180)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in (
        write_table(args.out),
        write_regression_table(args.out),
        write_images(args.out, args.images_per_class),
        write_text(args.out),
    ):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
