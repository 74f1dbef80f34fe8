"""The owner's own data: every format read, split and partitioned; bad data named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.make_data import write_images, write_regression_table, write_table, write_text
from protocols.job import assess, compute, jobdata
from protocols.job.spec import from_mapping
from training import chunks, owndata, partition
from training.catalogue import DataSource
from training.errors import ChunkError, DataError, SpecError


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("owndata")
    rng = np.random.default_rng(0)
    npz = out / "a.npz"
    np.savez(npz, x=rng.random((120, 2, 3)), y=np.arange(120) % 3)
    return {
        "table": write_table(out),
        "images": write_images(out, per_class=12),
        "text": write_text(out, sentences=300),
        "npz": npz,
        "diabetes": write_regression_table(out),
    }


WINE = {"target": "cultivar", "categorical": ("colour_band",), "missing": "fill"}


def test_table_standardised_with_training_statistics_and_one_hot(files: dict[str, Path]) -> None:
    s = owndata.load("table", DataSource(path=str(files["table"]), **WINE), seed=3)  # type: ignore[arg-type]
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (126, 17, 35)
    assert s.classes == 3 and s.info["classes"] == ["cultivar_0", "cultivar_1", "cultivar_2"]
    names = s.info["features"]
    assert names[-3:] == ["colour_band=high", "colour_band=low", "colour_band=mid"]
    numeric = [i for i, n in enumerate(names) if "=" not in n]
    # standardised on the training rows: mean 0, std 1 there (filled cells sit at the mean)
    assert np.allclose(s.train_x[:, numeric].mean(0), 0, atol=1e-5)
    assert np.allclose(s.train_x[:, numeric].std(0), 1, atol=0.02)
    assert set(np.unique(s.train_x[:, -3:])) == {0.0, 1.0}
    assert (s.train_x[:, -3:].sum(1) == 1).all()


def test_table_index_encoding_and_drop(files: dict[str, Path]) -> None:
    src = DataSource(
        path=str(files["table"]), target="cultivar", categorical=("colour_band",),
        missing="drop", encoding="index", features=("alcohol", "magnesium", "colour_band"),
    )
    s = owndata.load("table", src)
    assert s.input_shape == (3,) and len(s.train_y) + len(s.val_y) + len(s.test_y) == 175
    assert set(np.unique(np.concatenate([s.train_x, s.test_x])[:, 2])) == {0.0, 1.0, 2.0}


def test_parquet_reads_like_csv(files: dict[str, Path], tmp_path: Path) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = tmp_path / "wine.parquet"
    pq.write_table(pacsv.read_csv(files["table"]), path)
    a = owndata.load("table", DataSource(path=str(files["table"]), **WINE))  # type: ignore[arg-type]
    b = owndata.load("table", DataSource(path=str(path), **WINE))  # type: ignore[arg-type]
    assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.test_y, b.test_y)


def test_npz_images_and_text(files: dict[str, Path]) -> None:
    a = owndata.load("npz", DataSource(path=str(files["npz"])))
    assert a.input_shape == (6,) and a.classes == 3 and len(a.train_y) == 84
    im = owndata.load("images", DataSource(path=str(files["images"]), image_size=12, channels=3))
    assert im.input_shape == (3 * 12 * 12,) and im.classes == 10
    assert im.info["classes"][0] == "digit_0" and 0 <= im.train_x.min() and im.train_x.max() <= 1
    t = owndata.load("text", DataSource(path=str(files["text"]), seq_len=16))
    assert t.classes == 256 and t.train_x.dtype == np.int64 and t.input_shape == (16,)
    first = bytes(t.train_x[0].astype(np.uint8)) + bytes([int(t.train_y[0])])
    assert files["text"].read_bytes().startswith(first)
    # the splits are cut in order: no test window overlaps the training text
    assert len(t.val_y) and len(t.test_y)


@pytest.mark.parametrize("fmt", ["table", "npz", "images", "text"])
@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
def test_every_format_partitions_and_chunks(
    files: dict[str, Path], fmt: str, kind: str
) -> None:
    data = {"table": dict(WINE), "images": {"image_size": 8}}.get(fmt, {})
    s = owndata.load(fmt, DataSource(path=str(files[fmt]), **data))  # type: ignore[arg-type]
    parts = partition.partition(s.train_y, 3, kind, seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(s.train_y)))
    blob = chunks.encode_chunk(s.train_x[parts[0]], s.train_y[parts[0]])
    x, y = chunks.decode_chunk(blob, sample_shape=s.input_shape, classes=s.classes)
    assert np.array_equal(x, s.train_x[parts[0]]) and np.array_equal(y, s.train_y[parts[0]])


def _csv(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


BAD_TABLES = [
    ("a,b,y\n1,2,0\n3,4,1\n", {"target": "label"}, "", "column 'label'", "target column"),
    ("a,b,y\n1,x,0\n3,4,1\n", {"target": "y"}, "", "row 1, column 'b'", "data.categorical"),
    ("a,b,y\n1,2,0\n,4,1\n", {"target": "y"}, "", "row 2, column 'a'", "missing value"),
    ("a,b,y\n1,2,0\n3,4,0\n", {"target": "y"}, "", "column 'y'", "distinct"),
    ("a,b,y\n1,2,0\n3,4,1\n", {"target": "y", "features": ("a", "c")}, "", "column 'c'", "no such"),
]


@pytest.mark.parametrize(("text", "fields", "_", "where", "what"), BAD_TABLES)
def test_bad_tables_are_named(
    tmp_path: Path, text: str, fields: dict[str, object], _: str, where: str, what: str
) -> None:
    path = _csv(tmp_path / "t.csv", text)
    with pytest.raises(DataError) as info:
        owndata.load("table", DataSource(path=path, **fields))  # type: ignore[arg-type]
    assert info.value.file == path and info.value.where == where and what in info.value.problem
    assert info.value.reason == "bad_data" and info.value.field == "data"


def test_bad_images_and_sizes_are_named(files: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    png = next((files["images"] / "digit_0").iterdir())
    (root / "cat" / "1.png").write_bytes(png.read_bytes())
    with pytest.raises(DataError) as info:
        owndata.load("images", DataSource(path=str(root)))
    assert info.value.file == str(root / "dog") and "no .png" in info.value.problem
    (root / "dog" / "2.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataError) as info:
        owndata.load("images", DataSource(path=str(root)))
    assert info.value.file == str(root / "dog" / "2.jpg")
    assert "unreadable image" in info.value.problem
    with pytest.raises(DataError) as info:
        owndata.load("text", DataSource(path=str(files["text"]), max_bytes=1000))
    assert info.value.file == str(files["text"]) and "data.max_bytes=1000" in info.value.problem
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.array([{"a": 1}, {"b": 2}], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DataError) as info:
        owndata.load("npz", DataSource(path=str(bad)))
    assert "pickled objects are refused" in info.value.problem
    with pytest.raises(DataError) as info:
        owndata.load("npz", DataSource(path=str(tmp_path / "absent.npz")))
    assert info.value.problem == "no such file or folder"


def test_check_data_fits_the_model_to_the_data(files: dict[str, Path]) -> None:
    job = {
        "model": "mlp", "model_params": {"hidden": [16]}, "dataset": "table", "trainers": 2,
        "data": {"path": str(files["table"]), **WINE, "categorical": ["colour_band"]},
    }
    spec = from_mapping(job)
    seen = jobdata.check_data(spec)
    assert seen["model"]["params"]["in_features"] == 16 and seen["classes"] == 3
    assert seen["parameters"] == 16 * 16 + 16 + 16 * 3 + 3
    prepared = jobdata.prepare(spec)
    assert sum(n for slot in prepared.slots for _, n in slot) == seen["train"]
    assert len(prepared.heldout_y) == seen["validation"] and len(prepared.test_y) == seen["test"]
    with pytest.raises(SpecError) as info:
        jobdata.check_data(from_mapping({**job, "model": "cnn", "model_params": {}}))
    assert info.value.field == "model" and "the data gives 16" in info.value.detail
    with pytest.raises(SpecError) as info:
        jobdata.check_data(from_mapping({**job, "model_params": {"in_features": 9}}))
    assert info.value.field == "model_params.in_features"


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(20, 300),
    val=st.floats(0.01, 0.4),
    test=st.floats(0.01, 0.4),
    seed=st.integers(0, 2**32),
)
def test_splits_cover_every_sample_once(n: int, val: float, test: float, seed: int) -> None:
    order = np.random.default_rng(seed).permutation(n).astype(np.int64)
    src = DataSource(path="x", validation=val, test=test)
    try:
        tr, va, te = owndata._cut(order, src, "x")
    except DataError:
        assert int(n * test) < 1 or int(n * val) < 1
        return
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(n))
    assert len(te) == int(n * test) and len(va) == int(n * val) and len(tr) >= 1


def test_regression_targets_are_standardised_numbers(files: dict[str, Path]) -> None:
    src = DataSource(path=str(files["diabetes"]), target="progression")
    s = owndata.load("table", src, task="regression")
    assert s.classes == 1 and s.train_y.dtype == np.float32 and s.input_shape == (10,)
    assert abs(float(s.train_y.mean())) < 1e-5 and abs(float(s.train_y.std()) - 1) < 1e-4
    assert 50 < s.info["target_std"] < 100  # disease progression is in the tens to hundreds
    blob = chunks.encode_chunk(s.train_x, s.train_y)
    _, y = chunks.decode_chunk(blob, y_dtype="float32")
    assert np.array_equal(y, s.train_y)
    with pytest.raises(ChunkError):  # a classifier's trainer refuses float targets
        chunks.decode_chunk(blob)
    nan = chunks.encode_chunk(s.train_x[:2], np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ChunkError) as info:
        chunks.decode_chunk(nan, y_dtype="float32")
    assert info.value.problem == "non_finite"


def test_a_text_regression_target_is_named(tmp_path: Path) -> None:
    path = _csv(tmp_path / "r.csv", "a,y\n1,2.5\n2,high\n3,1.0\n")
    with pytest.raises(DataError) as info:
        owndata.load("table", DataSource(path=path, target="y"), task="regression")
    assert info.value.where == "row 2, column 'y'" and "must be numeric" in info.value.problem


def test_regression_job_trains_and_reports_mse_mae_r2(files: dict[str, Path]) -> None:
    import json

    spec = from_mapping({
        "dataset": "table", "task": "regression", "model": "mlp", "trainers": 1,
        "model_params": {"hidden": [16]}, "epochs": 20, "lr": 0.01, "momentum": 0.9,
        "batch_size": 16, "data": {"path": str(files["diabetes"]), "target": "progression"},
    })
    prepared = jobdata.prepare(spec)
    assert prepared.model.task == "regression" and prepared.model.params["classes"] == 1
    before = jobdata.metrics_on_test(prepared, prepared.initial)
    result = compute.train(
        json.dumps(prepared.model.to_mapping()), compute.train_params_json(spec),
        prepared.initial, [b for b, _ in prepared.slots[0]], threads=1, should_stop=lambda: False,
    )
    after = jobdata.metrics_on_test(prepared, result.weights)
    assert set(after) == {"task", "loss", "mse", "mae", "r2"} and after["task"] == "regression"
    # a linear model gets R² ~0.45 on this table; an untrained one is below 0
    assert before["r2"] < 0.1 and after["r2"] >= 0.3, (before, after)
    assert after["mse"] < before["mse"] and 20 < after["mae"] < 80  # in the target's units
    assert assess.check_update(prepared, spec, prepared.initial, result.weights) == ""


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"dataset": "text", "model": "char_lstm", "task": "classification"}, "task"),
        ({"dataset": "mnist", "task": "regression"}, "task"),
        ({"dataset": "images", "task": "next_token"}, "task"),
    ],
)
def test_tasks_fit_their_datasets(job: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as info:
        from_mapping({**job, "data": {"path": "x"}} if job["dataset"] != "mnist" else job)
    assert info.value.field == field


def test_the_submit_check_reads_a_table_without_torch(files: dict[str, Path]) -> None:
    import subprocess
    import sys

    job = {"dataset": "table", "model": "mlp", "trainers": 2,
           "data": {"path": str(files["table"]), **WINE, "categorical": ["colour_band"]}}
    code = (
        "import json, sys; from protocols.job import jobdata; "
        "from protocols.job.spec import from_mapping; "
        f"seen = jobdata.check_data(from_mapping(json.loads({json.dumps(job)!r}))); "
        "assert 'torch' not in sys.modules, 'torch'; print(seen['parameters'])"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert int(out.stdout) == 16 * 200 + 200 + 200 * 200 + 200 + 200 * 3 + 3
