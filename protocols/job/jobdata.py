"""The owner's data for a job, as blocking functions for worker threads.

Reads the job's dataset or files, fits the catalogue model to them, chunks each
slot's share (:func:`prepare`) and scores a model on the test split. It imports
``training`` (torch) inside the functions only (``protocols.job.compute``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from protocols.job.spec import JobSpec
    from training.modelspec import ModelSpec
    from training.owndata import Split

HELDOUT_SAMPLES = 1000


def load_data(spec: JobSpec) -> Split:
    """The job's data, split: a bundled dataset or the owner's files (``spec.data``).

    A bundled dataset's validation set is the first :data:`HELDOUT_SAMPLES` (at most
    half) of its test set, as before owner data existed.

    Raises:
        training.errors.DataError: the owner's data is unusable (names file, row, column).
        training.errors.DatasetUnavailable: a bundled dataset is not installed.
    """
    from training import catalogue, datasets, owndata

    if catalogue.DATASETS[spec.dataset].source == "owner":
        task = catalogue.task_of(spec.dataset, spec.task)
        train_task = "regression" if task == "regression" else "classification"
        return owndata.load(
            spec.dataset, spec.data, seed=spec.seed, limit=spec.limit, task=train_task
        )
    data = datasets.load(spec.dataset, limit=spec.limit or None)
    n = min(HELDOUT_SAMPLES, len(data.test_y) // 2)
    return owndata.Split(
        data.train_x, data.train_y, data.test_x[:n], data.test_y[:n], data.test_x, data.test_y,
        data.classes, tuple(data.train_x.shape[1:]),
    )


def model_spec_for(spec: JobSpec, data: Split) -> ModelSpec:
    """The job's model fitted to ``data``, with its LoRA adapters when it has any.

    Raises:
        training.errors.SpecError: as :func:`_model_for`.
    """
    model = _model_for(spec, data)
    if not spec.lora.rank:
        return model
    from training.modelspec import ModelSpec

    lora = {"rank": spec.lora.rank, "alpha": spec.lora.alpha, "targets": list(spec.lora.targets)}
    adapted = ModelSpec.from_mapping({**model.to_mapping(), "lora": lora})
    kinds = {b["type"] for b in adapted.layers}
    targets = set(spec.lora.targets)
    if not ("linear" in targets and "linear" in kinds) and not (
        targets & {"attention", "feedforward"} and "transformer" in kinds
    ):
        from training.errors import SpecError

        raise SpecError("lora.targets", "no linear map of the model is a target")
    return adapted


def _model_for(spec: JobSpec, data: Split) -> ModelSpec:
    """The catalogue model for ``spec``, its input size and classes set from ``data``.

    Raises:
        training.errors.SpecError: ``model_params`` contradicts the data (field
            ``model_params.<name>``), or the model cannot read it.
    """
    from training.modelspec import ModelSpec

    width = 1
    for d in data.input_shape:
        width *= d
    if spec.model == "custom":
        return _custom_model(spec, data)
    derived: dict[str, Any] = {}
    if spec.model in ("logreg", "mlp"):
        derived = {"in_features": width, "classes": data.classes}
    elif spec.model == "cnn":
        side = 8 if spec.dataset == "digits" else 28
        if spec.dataset == "images":
            side = spec.data.image_size
            derived["channels"] = spec.data.channels
        derived.update(image_size=side, classes=data.classes)
    elif spec.model == "char_lstm":
        derived = {"vocab_size": data.classes, "seq_len": width}
    for key, value in derived.items():
        if key in spec.model_params and spec.model_params[key] != value:
            from training.errors import SpecError

            raise SpecError(f"model_params.{key}", f"the data gives {value}")
    from training.catalogue import task_of

    task = "regression" if task_of(spec.dataset, spec.task) == "regression" else "classification"
    params = {**spec.model_params, **derived}
    model = ModelSpec.from_mapping({"name": spec.model, "params": params, "task": task})
    if model.input_shape != (width,) and model.input_shape != data.input_shape:
        from training.errors import SpecError

        raise SpecError("model", f"reads samples of {model.input_shape}, the data gives {width}")
    return model


def _custom_model(spec: JobSpec, data: Split) -> ModelSpec:
    """The job's own blocks, reading the data's samples; its outputs must fit the task."""
    from training.catalogue import task_of
    from training.errors import SpecError
    from training.modelspec import ModelSpec

    task = "regression" if task_of(spec.dataset, spec.task) == "regression" else "classification"
    tokens = data.train_x.dtype.kind == "i"
    params = {**spec.model_params, "in_shape": list(data.input_shape), "tokens": tokens}
    try:
        model = ModelSpec.from_mapping({"name": "custom", "params": params, "task": task})
    except SpecError as exc:
        field = exc.field.removeprefix("params.")
        raise SpecError(f"model_params.{field}", exc.detail) from None
    if task == "classification" and model.classes != data.classes:
        raise SpecError(
            "model_params.layers",
            f"the last block gives {model.classes} outputs; the data has {data.classes} classes",
        )
    return model


def initial_weights(spec: JobSpec, model: ModelSpec) -> bytes:
    """The job's first global model: ``spec.initial_weights`` checked, or seeded random.

    Raises:
        training.errors.SpecError: on ``initial_weights``: unreadable, too large, or
            names, shapes or dtypes that do not match the architecture.
    """
    from training import weights
    from training.errors import SpecError, WeightsError

    if not spec.initial_weights:
        return weights.initial(model, spec.seed)
    try:
        blob = Path(spec.initial_weights).expanduser().read_bytes()
        base = weights.decode(blob, model.base)  # a LoRA job starts from base weights
        if model.lora is not None:
            fresh = weights.decode(weights.initial(model, spec.seed), model)
            blob = weights.encode({**fresh, **base})
    except OSError as exc:
        raise SpecError("initial_weights", f"cannot read {spec.initial_weights}: {exc}") from None
    except WeightsError as exc:
        raise SpecError("initial_weights", f"{spec.initial_weights}: {exc}") from None
    return blob


def check_data(spec: JobSpec) -> dict[str, Any]:
    """Read the job's data and fit the model to it, as at submit; blocking.

    Torch is not imported (the figures are ``training.blocks``'), unless
    ``spec.initial_weights`` must be checked against the architecture.

    Returns:
        What the owner should see: samples per split, classes, sample shape, the
        model, its parameters (the base's), the LoRA adapters' parameters (0 without
        LoRA; with it, the only ones trained and uploaded), forward FLOPs and
        activation bytes per sample.

    Raises:
        training.errors.SpecError: as :func:`load_data` and :func:`model_spec_for`
            (``DataError`` names the file, row or column).
    """
    from training import budget

    data = load_data(spec)
    model = model_spec_for(spec, data)
    if spec.initial_weights:
        initial_weights(spec, model)
    cost = model.cost()
    announced = model.to_mapping()
    adapters = (
        budget.adapter_params(announced["name"], announced["params"], model.lora)
        if model.lora is not None
        else 0
    )
    return {
        "train": len(data.train_y),
        "validation": len(data.val_y),
        "test": len(data.test_y),
        "classes": data.classes,
        "sample_shape": list(data.input_shape),
        "model": model.to_mapping(),
        "parameters": cost.params,
        "adapter_parameters": adapters,
        "flops_per_sample": cost.flops,
        "activation_bytes_per_sample": 4 * cost.activations,
    }


@dataclass
class Prepared:
    """An owner's data for one job: each slot's chunks, held-out and test sets."""

    model: ModelSpec
    slots: list[list[tuple[bytes, int]]]
    heldout_x: NDArray[Any]
    heldout_y: NDArray[Any]
    test_x: NDArray[Any]
    test_y: NDArray[Any]
    initial: bytes
    global_loss: tuple[str, float] = ("", 0.0)
    task: str = "classification"
    target_std: float = 1.0


def prepare(spec: JobSpec) -> Prepared:
    """Load the dataset, split it among ``spec.trainers`` slots, chunk each slot.

    Only the training split is chunked; the validation split (update checks) and
    the test split (reported accuracy) stay in the owner's memory. Deterministic
    under ``spec.seed``: a resumed job prepares the same chunks.

    Raises:
        training.errors.SpecError: as :func:`check_data`.
    """
    import numpy as np

    from training import catalogue, chunks, datasets, partition

    data = load_data(spec)
    model = model_spec_for(spec, data)
    parts = partition.partition(
        data.train_y, spec.trainers, spec.partition, alpha=spec.alpha, seed=spec.seed
    )
    slots = []
    for idx in parts:
        idx = np.sort(idx)
        x, y = data.train_x[idx], data.train_y[idx]
        blobs = chunks.make_chunks(x, y, spec.chunk_samples)
        counts = [min(spec.chunk_samples, len(y) - i) for i in range(0, len(y), spec.chunk_samples)]
        slots.append(list(zip(blobs, counts, strict=True)))
    datasets.forget()  # the chunks hold the training split now: not twice (issue 17)
    return Prepared(
        model=model,
        slots=slots,
        heldout_x=data.val_x,
        heldout_y=data.val_y,
        test_x=data.test_x,
        test_y=data.test_y,
        initial=initial_weights(spec, model),
        task=catalogue.task_of(spec.dataset, spec.task),
        target_std=float(data.info.get("target_std", 1.0)),
    )


def evaluate(prepared: Prepared, model: bytes) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` on the job's test set; for regression (MSE, R²)."""
    return headline(metrics_on_test(prepared, model))


def headline(metrics: dict[str, Any]) -> tuple[float, float]:
    """The (loss, score) a round records: score is accuracy, or R² for regression."""
    score = metrics["r2" if metrics["task"] == "regression" else "accuracy"]
    return float(metrics["loss"]), float(score)


def metrics_on_test(prepared: Prepared, model: bytes) -> dict[str, Any]:
    """Every metric of the job's task on its test set, as status and metrics.json show.

    ``task`` names it; classification: ``loss``, ``accuracy``; next-token:
    ``loss``, ``accuracy`` (of the next byte), ``perplexity``; regression: ``mse``,
    ``mae`` (in the target's own units: the owner undoes the standardisation) and
    ``r2``, with ``loss`` the MSE.
    """
    from training.local import task_metrics

    m = task_metrics(prepared.model, model, prepared.test_x, prepared.test_y)
    if prepared.task == "regression":
        scale = prepared.target_std
        m = {**m, "mse": m["mse"] * scale**2, "mae": m["mae"] * scale}
        m["loss"] = m["mse"]
    elif prepared.task == "classification":
        m.pop("perplexity", None)
    return {**m, "task": prepared.task}


def merged(model: bytes, rank: int, alpha: float) -> bytes:
    """A LoRA job's final model (safetensors) with its adapters folded into the base.

    Raises:
        ValueError: ``model`` is not safetensors, or an adapter does not fit its base.
    """
    from training import lora

    return lora.merge_bytes(model, rank, alpha)
