"""CSV and Parquet tables read with pyarrow, checked and encoded (see ``training.owndata``).

Row numbers in errors count data rows from 1 (a CSV header line is not a row).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.catalogue import DataSource
from training.errors import DataError

_MISSING_CATEGORY = "<missing>"
_MAX_CATEGORIES = 1024


@dataclass(frozen=True)
class Column:
    """One feature column as read: numbers (NaN where missing) or category strings."""

    name: str
    numbers: NDArray[np.float64] | None
    categories: list[str] | None


@dataclass(frozen=True)
class Table:
    """A checked table: feature columns, class labels and the class names.

    Attributes:
        file: Where it was read from.
        columns: Feature columns, rows already dropped where ``missing = "drop"``.
        y: Class index of each row, or (regression) its float64 target.
        classes: The target's distinct values, sorted; ``y`` indexes them (empty for
            regression).
        encoding: ``onehot`` or ``index`` for categorical columns.
    """

    file: str
    columns: list[Column]
    y: NDArray[Any]
    classes: list[Any]
    encoding: str

    def encode(self, train: NDArray[np.int64]) -> tuple[NDArray[np.float32], dict[str, Any]]:
        """Every row as float32 features, standardised with the ``train`` rows' statistics.

        Raises:
            DataError: a numeric column with no value in the training rows.
        """
        parts: list[NDArray[np.float64]] = []
        names: list[str] = []
        stats: dict[str, list[float]] = {}
        for col in self.columns:
            if col.numbers is not None:
                seen = col.numbers[train]
                seen = seen[~np.isnan(seen)]
                if not len(seen):
                    raise DataError(
                        self.file, f"column {col.name!r}", "no value in the training rows"
                    )
                mean, std = float(seen.mean()), float(seen.std())
                filled = np.where(np.isnan(col.numbers), mean, col.numbers)
                parts.append(((filled - mean) / (std if std > 0 else 1.0))[:, None])
                names.append(col.name)
                stats[col.name] = [mean, std]
                continue
            assert col.categories is not None
            values = sorted(set(col.categories))
            lookup = {v: i for i, v in enumerate(values)}
            index = np.array([lookup[v] for v in col.categories], dtype=np.float64)
            if self.encoding == "index":
                parts.append(index[:, None])
                names.append(col.name)
            else:
                parts.append(np.eye(len(values))[index.astype(np.int64)])
                names += [f"{col.name}={v}" for v in values]
        x = np.concatenate(parts, axis=1).astype(np.float32)
        return x, {"features": names, "standardised": stats}


def read_table(path: Path, src: DataSource, _size: int, *, regression: bool = False) -> Table:
    """Read and check a CSV or Parquet table (see ``training.owndata``).

    Raises:
        DataError: unreadable file, missing column, non-numeric feature not listed as
            categorical, missing value under ``missing = "error"``, too few rows or
            classes.
    """
    import pyarrow as pa

    where = str(path)
    raw = _read(path)
    header = list(raw.column_names)
    if src.target not in header:
        raise DataError(
            where, f"column {src.target!r}", f"target column not found; columns: {header[:20]}"
        )
    features = list(src.features) or [c for c in header if c != src.target]
    for name in [*features, *src.categorical]:
        if name not in header:
            raise DataError(where, f"column {name!r}", f"no such column; columns: {header[:20]}")
    if src.target in features:
        raise DataError(where, f"column {src.target!r}", "the target cannot also be a feature")
    if not features:
        raise DataError(where, "", "no feature columns")
    target = raw.column(src.target).to_pylist()
    columns = [_column(where, n, raw.column(n), n in src.categorical, pa) for n in features]
    missing = np.array([v is None or v != v for v in target])
    for col in columns:
        gaps = (
            np.isnan(col.numbers)
            if col.numbers is not None
            else np.array([v is None for v in col.categories or []], dtype=bool)
        )
        if src.missing == "error" and (gaps.any() or missing.any()):
            first_col = int(np.argmax(gaps)) if gaps.any() else len(gaps)
            first_tgt = int(np.argmax(missing)) if missing.any() else len(gaps)
            row, name = min((first_col, col.name), (first_tgt, src.target))
            raise DataError(
                where,
                f"row {row + 1}, column {name!r}",
                "missing value; set data.missing to drop or fill",
            )
        if src.missing == "drop":
            missing |= gaps
    keep = np.flatnonzero(~missing)
    columns = [_keep(c, keep) for c in columns]
    kept = [target[i] for i in keep]
    if regression:
        return Table(where, columns, _numbers(where, src.target, kept, keep), [], src.encoding)
    y, classes = _classes(where, src.target, kept)
    return Table(where, columns, y, classes, src.encoding)


def _numbers(where: str, name: str, values: list[Any], rows: NDArray[np.int64]) -> NDArray[Any]:
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise DataError(
                where, f"row {int(rows[i]) + 1}, column {name!r}",
                f"{str(v)[:40]!r} is not a number; a regression target must be numeric",
            ) from None
        if not np.isfinite(out[i]):
            raise DataError(where, f"row {int(rows[i]) + 1}, column {name!r}", "infinite value")
    return out


def _read(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            opts = pacsv.ConvertOptions(strings_can_be_null=True)
            return pacsv.read_csv(path, convert_options=opts)
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(str(path), "", f"cannot read the table: {exc}") from None
    raise DataError(str(path), "", "a table is a .csv or .parquet file")


def _column(where: str, name: str, data: Any, categorical: bool, pa: Any) -> Column:
    if categorical:
        cats = [None if v is None or v != v else str(v) for v in data.to_pylist()]
        if len(set(cats)) > _MAX_CATEGORIES:
            raise DataError(where, f"column {name!r}", f"more than {_MAX_CATEGORIES} categories")
        return Column(name, None, cats)  # type: ignore[arg-type]
    kind = data.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        numbers = np.array(
            [np.nan if v is None else float(v) for v in data.to_pylist()], dtype=np.float64
        )
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        numbers = np.full(len(data), np.nan)
        for row, v in enumerate(data.to_pylist()):
            if v is None:
                continue
            try:
                numbers[row] = float(v)
            except ValueError:
                raise DataError(
                    where,
                    f"row {row + 1}, column {name!r}",
                    f"{v[:40]!r} is not a number; list the column in data.categorical to encode it",
                ) from None
    else:
        raise DataError(
            where, f"column {name!r}", f"type {kind} is neither numeric nor categorical"
        )
    inf = np.isinf(numbers)
    if inf.any():
        raise DataError(where, f"row {int(np.argmax(inf)) + 1}, column {name!r}", "infinite value")
    return Column(name, numbers, None)


def _keep(col: Column, rows: NDArray[np.int64]) -> Column:
    if col.numbers is not None:
        return Column(col.name, col.numbers[rows], None)
    cats = col.categories or []
    return Column(col.name, None, [_MISSING_CATEGORY if cats[i] is None else cats[i] for i in rows])


def _classes(where: str, target: str, values: list[Any]) -> tuple[NDArray[np.int64], list[Any]]:
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        distinct: list[Any] = sorted(set(values))
    else:
        values = [str(v) for v in values]
        distinct = sorted(set(values))
    if len(distinct) < 2:
        raise DataError(where, f"column {target!r}", f"{len(distinct)} distinct value(s); need 2+")
    lookup = {v: i for i, v in enumerate(distinct)}
    return np.array([lookup[v] for v in values], dtype=np.int64), distinct
