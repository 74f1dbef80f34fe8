"""Fetch a job's final model and write the result folder: model, metrics, curve.

Used by ``distro-train result`` and ``distro-train demo``. The model comes from the
owner's store by a presigned URL and is verified against the sha256 the owner
published before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_MODEL_BYTES = 512 * 1024 * 1024


TASK_LABELS = {
    "classification": ("accuracy", "loss"),
    "next_token": ("next-token accuracy", "loss"),
    "regression": ("R²", "MSE"),
}
"""What a round's ``test_accuracy`` and ``test_loss`` are, per task, as shown."""
METRIC_NAMES = {
    "accuracy": "accuracy", "loss": "loss", "perplexity": "perplexity",
    "mse": "MSE", "mae": "MAE", "r2": "R²",
}


def task_of(records: list[dict[str, Any]]) -> str:
    """The task of a job's round records (``classification`` for older records)."""
    metrics = records[-1].get("metrics", {}) if records else {}
    task = metrics.get("task", "classification")
    return task if task in TASK_LABELS else "classification"


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` of each metric of a round's ``metrics`` record, as shown."""
    return [
        (f"test {METRIC_NAMES[k]}", f"{float(v):.4f}")
        for k, v in metrics.items()
        if k in METRIC_NAMES and k != "mse" and isinstance(v, int | float)
    ]


def metrics_records(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per round: round, seconds, test accuracy/loss, accepted/rejected.

    ``metrics`` holds every metric of the job's task (``task``; regression: ``mse``,
    ``mae``, ``r2``; next-token: ``perplexity`` too); ``test_accuracy`` is R² for
    regression and ``test_loss`` its MSE.
    """
    return [
        {
            "round": r["round"],
            "seconds": round(float(r["seconds"]), 3),
            "test_accuracy": r["test_accuracy"],
            "test_loss": r["test_loss"],
            "metrics": r.get("metrics", {}),
            "accepted": r["accepted"],
            "rejected": r["rejected"],
            "model_sha256": r["model_sha256"],
            "used_updates": r.get("used_updates", []),
            "rejected_updates": r.get("rejected_updates", []),
            "rejected_reasons": r.get("rejected_reasons", {}),
        }
        for r in result["rounds"]
    ]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_result(result: dict[str, Any], out: Path) -> dict[str, Any]:
    """Download and verify the model, write ``model.safetensors``, ``metrics.json``, ``curve.png``.

    A LoRA job's folder also gets ``model.merged.safetensors``: the base weights with
    the adapters folded in, loadable as the plain architecture.

    Returns:
        A summary: accuracy (R² for regression), loss, task, every metric of the
        last round, rounds, seconds, model_sha256 and the written paths.

    Raises:
        p2pnode.stores.StorageError: The model could not be fetched or failed its hash.
        ValueError: The job has no model yet.
    """
    from p2pnode.stores import fetch_verified

    if not result.get("model_url") or not result.get("model_sha256"):
        raise ValueError(f"job {result.get('job_id')} has no model yet")
    out.mkdir(parents=True, exist_ok=True)
    model = fetch_verified(
        result["model_url"], result["model_sha256"], MAX_MODEL_BYTES, result.get("model_encryption")
    )
    _write_atomic(out / "model.safetensors", model)
    records = metrics_records(result)
    last = records[-1] if records else {}
    summary = {
        "job_id": result["job_id"],
        "state": result["state"],
        "accuracy": last.get("test_accuracy"),
        "loss": last.get("test_loss"),
        "task": task_of(records),
        "metrics": last.get("metrics", {}),
        "rounds": len(records),
        "seconds": last.get("seconds"),
        "model_sha256": result["model_sha256"],
    }
    spec = json.loads(result["spec"])
    lora = spec.get("lora") or {}
    if lora.get("rank"):  # a LoRA job: also the adapters folded into the base weights
        from protocols.job.jobdata import merged

        _write_atomic(out / "model.merged.safetensors", merged(model, lora["rank"], lora["alpha"]))
        summary["merged"] = str(out / "model.merged.safetensors")
    doc = {"summary": summary, "spec": spec, "rounds": records}
    _write_atomic(out / "metrics.json", json.dumps(doc, indent=2).encode())
    plot_curve(records, out / "curve.png")
    summary["out"] = str(out)
    return summary


def plot_curve(records: list[dict[str, Any]], path: Path) -> None:
    """The task's test score and loss per round, as a PNG (perplexity for next-token)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rounds = [r["round"] for r in records]
    task = task_of(records)
    score, loss = TASK_LABELS[task]
    right = [r["test_loss"] for r in records]
    if task == "next_token":
        loss = "perplexity"
        right = [r.get("metrics", {}).get("perplexity", float("nan")) for r in records]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(rounds, [r["test_accuracy"] for r in records], "o-", color="tab:blue")
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"test {score}", color="tab:blue")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(rounds, right, "s--", color="tab:red")
    ax2.set_ylabel(f"test {loss}", color="tab:red")
    ax.set_title("distro-train: global model per round")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
