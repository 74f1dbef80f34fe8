"""Every example job end to end over real processes, and LoRA against full fine-tuning.

Writes the examples' data (``examples/make_data.py``) into a temporary copy of
``examples/``, starts an embedded S3 server, a bootstrap node, an owner and trainer
daemons (separate OS processes), and runs each ``examples/*.toml`` job in turn
(``text_base`` before ``text_lora``, whose base it trains). One line per example:
format, model, parameters, bytes per update, rounds, final metric, seconds. Then the
LoRA job is run again as full fine-tuning of the same base (no ``lora`` table) and the
two are compared. Bytes per update are measured, not assumed: the encoded size of
what a trainer uploads (the whole model, or for LoRA its adapter tensors: exactly what
``training.local.train`` returns). The last line is
``examples_passed=N/M lora_bytes_ratio=X`` (X = full bytes / LoRA bytes).

    .venv/bin/python bench/own_data.py [--trainers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from safetensors.torch import load

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/ is not installed

from examples.make_data import write_images, write_regression_table, write_table, write_text
from p2pnode.commands.demo import clean_env, launch
from p2pnode.commands.results import TASK_LABELS, write_result
from p2pnode.control import call
from p2pnode.procs import Processes, start_embedded_s3
from protocols.job.spec import read_file
from training import models, weights

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ORDER = ["wine_table", "diabetes_regression", "digits_images", "tiny_corpus",
         "text_base", "text_lora"]
JOB_TIMEOUT_S = 900.0


def _wait(owner: Path, procs: Processes, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        procs.check_alive()
        status: dict[str, Any] = call(owner, "jobs.status", {"job_id": job_id})
        if status["state"] not in ("preparing", "running"):
            return status
        time.sleep(0.5)  # a benchmark polling a daemon, not a test
    raise TimeoutError(f"job {job_id} still running after {JOB_TIMEOUT_S}s")


def _update_bytes(model_file: Path, lora: bool) -> int:
    state = load(model_file.read_bytes())
    if lora:
        state = {k: v for k, v in state.items() if models.is_adapter(k)}
    return len(weights.encode(state))


def run(
    owner: Path, procs: Processes, name: str, spec: dict[str, Any], out: Path
) -> dict[str, Any]:
    """Submit ``spec``, wait for it, fetch the result; one summary record."""
    started = time.monotonic()
    answer = call(owner, "jobs.submit", {"spec": spec}, timeout=300)
    status = _wait(owner, procs, answer["job_id"])
    record: dict[str, Any] = {"name": name, "state": status["state"], "spec": spec,
                              "params": answer.get("check", {}).get("parameters", 0)}
    if status["state"] != "done":
        record["error"] = status.get("error")
        return record
    result = write_result(call(owner, "jobs.result", {"job_id": answer["job_id"]}), out)
    lora = bool(spec.get("lora", {}).get("rank"))
    last = status["history"][-1]
    record.update(
        rounds=len(status["history"]), task=result["task"], score=last["test_accuracy"],
        loss=last["test_loss"], metrics=last.get("metrics", {}),
        update_bytes=_update_bytes(out / "model.safetensors", lora),
        seconds=time.monotonic() - started, model_file=out / "model.safetensors",
    )
    return record


def line(r: dict[str, Any]) -> str:
    """One example's figures."""
    spec = r["spec"]
    if r["state"] != "done":
        return f"{r['name']}: FAILED ({r['state']}: {r.get('error')})"
    label = TASK_LABELS[r["task"]][0]
    extra = r["metrics"].get("perplexity")
    metric = f"{label}={r['score']:.4f}" + (f" perplexity={extra:.2f}" if extra else "")
    return (
        f"{r['name']}: format={spec['dataset']} model={spec['model']} params={r['params']} "
        f"bytes_per_update={r['update_bytes']} rounds={r['rounds']} {metric} "
        f"seconds={r['seconds']:.1f}"
    )


def main() -> int:
    """Run every example, then the LoRA comparison; the summary line last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="keep processes' files here")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="distro-own-data-"))
    jobs = work / "examples"
    shutil.copytree(EXAMPLES, jobs, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("data", "__pycache__"))
    data = jobs / "data"
    data.mkdir(exist_ok=True)
    write_table(data), write_regression_table(data), write_images(data), write_text(data)
    (work / "logs").mkdir(exist_ok=True)
    procs = Processes(work)
    results: list[dict[str, Any]] = []
    try:
        storage = start_embedded_s3(procs, "s3", work / "s3", clean_env())
        owner = launch(work, procs, storage, args.trainers, say=lambda _m: None).owner_dir
        for name in ORDER:
            spec = read_file(jobs / f"{name}.toml")
            spec["trainers"] = args.trainers
            out = data / ("base" if name == "text_base" else name)
            results.append(run(owner, procs, name, spec, out))
            print(line(results[-1]), flush=True)
        lora = results[-1]
        full_spec = {k: v for k, v in lora["spec"].items() if k != "lora"}
        full = run(owner, procs, "text_full_finetune", full_spec, data / "full")
        print(line(full), flush=True)
    finally:
        procs.stop_all()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    ratio = "n/a"
    if lora["state"] == full["state"] == "done":
        ratio = f"{full['update_bytes'] / lora['update_bytes']:.1f}"
        print(
            f"lora_vs_full: lora_bytes={lora['update_bytes']} full_bytes={full['update_bytes']} "
            f"lora_accuracy={lora['score']:.4f} full_accuracy={full['score']:.4f} "
            f"lora_loss={lora['loss']:.4f} full_loss={full['loss']:.4f}"
        )
    passed = sum(r["state"] == "done" for r in results)
    print(f"examples_passed={passed}/{len(results)} lora_bytes_ratio={ratio}")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
