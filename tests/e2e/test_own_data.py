"""The owner's own data end to end over real processes: bootstrap, owner, trainers and
the embedded S3 server as separate OS processes; a CSV table job, a regression table
job, an image-folder job and a text job run one after the other on the same cluster,
each reaching a stated floor, and bad data is refused at submit with its file, row and
column named before anything is stored.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from examples.make_data import write_images, write_regression_table, write_table, write_text
from p2pnode.commands.demo import clean_env, launch
from p2pnode.commands.results import write_result
from p2pnode.control import call
from p2pnode.errors import ControlError
from p2pnode.procs import Processes, start_embedded_s3
from tests.conftest import wait_for

SUBMIT_S = 120.0
COMMON = {"trainers": 2, "partition": "iid", "round_deadline_s": 60.0, "batch_size": 16}


def _run(owner: Path, procs: Processes, job: dict[str, Any]) -> dict[str, Any]:
    # submit reads the data and loads torch in the owner daemon: allow for a cold start
    answer = call(owner, "jobs.submit", {"spec": {**COMMON, **job}}, timeout=SUBMIT_S)
    job_id, seen = answer["job_id"], answer["check"]  # what the owner is shown at submit
    assert seen["parameters"] > 0 and seen["flops_per_sample"] > 0 and seen["train"] > 0

    def finished() -> dict[str, Any] | None:
        procs.check_alive()
        s: dict[str, Any] = call(owner, "jobs.status", {"job_id": job_id})
        return s if s["state"] not in ("preparing", "running") else None

    status = wait_for(finished, timeout=180, interval=0.25, what=f"job {job['dataset']} to end")
    assert status["state"] == "done", status
    return status


def _bad_jobs(data: Path, bad: Path, images: Path, text: Path) -> list[tuple[dict[str, Any], str]]:
    """Each bad-data case the issue names, and what its error must say."""
    empty = data / "empty_class"
    (empty / "cat").mkdir(parents=True)
    (empty / "dog").mkdir()
    png = next((images / "digit_0").iterdir())
    (empty / "cat" / "1.png").write_bytes(png.read_bytes())
    broken = data / "broken"
    shutil.copytree(empty, broken)
    (broken / "dog" / "2.jpg").write_bytes(b"not an image")
    return [
        ({"dataset": "table", "data": {"path": str(bad), "target": "label"}},
         f"{bad}: column 'label': target column not found"),
        ({"dataset": "table", "data": {"path": str(bad), "target": "y"}},
         f"{bad}: row 2, column 'b': 'oops' is not a number; list the column in data.categorical"),
        ({"dataset": "images", "data": {"path": str(empty)}},
         f"{empty / 'dog'}: class folder has no"),
        ({"dataset": "images", "data": {"path": str(broken)}},
         f"{broken / 'dog' / '2.jpg'}: unreadable image"),
        ({"dataset": "text", "model": "char_lstm", "data": {"path": str(text), "max_bytes": 100}},
         f"{text}: ... bytes, over the limit data.max_bytes=100"),
    ]


def test_table_image_and_text_jobs_over_real_processes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    table, images, text = write_table(data), write_images(data, 40), write_text(data, 600)
    diabetes = write_regression_table(data)
    bad = data / "bad.csv"
    bad.write_text("a,b,y\n1,2,0\n3,oops,1\n")
    procs = Processes(tmp_path)
    (tmp_path / "logs").mkdir()
    try:
        storage = start_embedded_s3(procs, "s3", tmp_path / "s3", clean_env())
        owner = launch(tmp_path, procs, storage, trainers=2, say=lambda _m: None).owner_dir

        # Bad data: refused at submit, naming file, row or column; no job is created.
        for spec, named in _bad_jobs(data, bad, images, text):
            with pytest.raises(ControlError) as info:
                call(owner, "jobs.submit", {"spec": spec}, timeout=SUBMIT_S)
            assert info.value.code == -32602, info.value
            assert all(part in info.value.message for part in named.split(" ... ")), info.value
        assert call(owner, "jobs.list", {}) == []

        wine = _run(owner, procs, {
            "dataset": "table", "model": "mlp", "model_params": {"hidden": [16]},
            "rounds": 4, "epochs": 5, "lr": 0.05, "chunk_samples": 100,
            "data": {"path": str(table), "target": "cultivar", "categorical": ["colour_band"],
                     "missing": "fill"},
        })
        assert wine["history"][-1]["test_accuracy"] >= 0.85

        regression = _run(owner, procs, {
            "dataset": "table", "task": "regression", "model": "mlp",
            "model_params": {"hidden": [16]}, "rounds": 4, "epochs": 5, "lr": 0.01,
            "momentum": 0.9, "chunk_samples": 200,
            "data": {"path": str(diabetes), "target": "progression"},
        })
        last = regression["history"][-1]
        # R² of a linear model on this table is ~0.45; the target's units are in the tens
        assert last["metrics"]["task"] == "regression" and last["test_accuracy"] >= 0.3
        assert last["metrics"]["r2"] == last["test_accuracy"]
        assert 20 < last["metrics"]["mae"] < 80 and last["test_loss"] == last["metrics"]["mse"]

        digits = _run(owner, procs, {
            "dataset": "images", "model": "mlp", "model_params": {"hidden": [32]},
            "rounds": 5, "epochs": 5, "lr": 0.1, "chunk_samples": 200,
            "data": {"path": str(images), "image_size": 8},
        })
        assert digits["history"][-1]["test_accuracy"] >= 0.75

        corpus = _run(owner, procs, {
            "dataset": "text", "model": "char_lstm",
            "model_params": {"embed_dim": 8, "hidden_size": 32},
            "rounds": 3, "epochs": 1, "lr": 0.02, "optimizer": "adam", "batch_size": 32,
            "limit": 3000, "chunk_samples": 1500, "data": {"path": str(text), "seq_len": 16},
        })
        # 256 byte classes; a model that learnt nothing scores ~1/256 and ln(256) = 5.5
        assert corpus["history"][-1]["test_accuracy"] >= 0.4
        assert corpus["history"][-1]["test_loss"] < 2.5
        assert corpus["history"][-1]["metrics"]["perplexity"] < 12.5

        # LoRA: fine-tune the text model just trained, adapters on its linear head only.
        write_result(call(owner, "jobs.result", {"job_id": corpus["job_id"]}), tmp_path / "base")
        tuned = _run(owner, procs, {
            "dataset": "text", "model": "char_lstm",
            "model_params": {"embed_dim": 8, "hidden_size": 32},
            "initial_weights": str(tmp_path / "base" / "model.safetensors"),
            "lora": {"rank": 4, "alpha": 8.0, "targets": ["linear"]},
            "rounds": 2, "epochs": 1, "lr": 0.01, "optimizer": "adam", "batch_size": 32,
            "limit": 3000, "chunk_samples": 1500, "seed": 1,
            "data": {"path": str(text), "seq_len": 16},
        })
        # every update was accepted: the owner takes only the adapters' tensors, so a
        # full-weights upload would have been rejected ("names")
        assert all(r["accepted"] == 2 and r["rejected"] == 0 for r in tuned["history"])
        assert tuned["history"][-1]["test_loss"] < 2.5
        lora_result = call(owner, "jobs.result", {"job_id": tuned["job_id"]})
        out = write_result(lora_result, tmp_path / "lora")
        full = (tmp_path / "lora" / "model.safetensors").stat().st_size
        assert Path(out["merged"]).stat().st_size < full  # the adapters are folded in
    finally:
        procs.stop_all()
