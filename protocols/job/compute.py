"""The heavy work of the job protocol, as blocking functions for worker threads.

This is the only module of ``protocols/`` that reaches into ``training`` (torch),
and it imports it inside the functions: the daemon stays torch-free until it
actually prepares, trains or aggregates a job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import distro_json
from protocols.job.spec import JobSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from training.local import TrainResult
    from training.modelspec import ModelSpec
    from training.owndata import Split

MAX_PARAMS_JSON = 16 * 1024
HELDOUT_SAMPLES = 1000


def sha256(data: bytes) -> str:
    """Lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_object(text: str, what: str) -> dict[str, Any]:
    """Decode a peer's small JSON object, or raise ``training.errors.SpecError``."""
    from training.errors import SpecError  # torch-free, kept beside its use

    if len(text) > MAX_PARAMS_JSON:
        raise SpecError(what, f"larger than {MAX_PARAMS_JSON} bytes")
    try:
        value = distro_json.loads(text)
    except ValueError as exc:
        raise SpecError(what, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SpecError(what, "must be an object")
    return value


def warm_up(device: str = "cpu") -> str:
    """Import the training stack (torch) ahead of the first task; blocking.

    Returns:
        What the trainer should advertise as its GPU for ``device`` (``[trainer]
        device``): the CUDA device's model when it trains there, else "".

    Raises:
        training.errors.DeviceUnavailable: ``cuda`` asked for and torch sees none.
    """
    from training.local import device_name, resolve_device

    return device_name(resolve_device(device))


def check_job(model_json: str, params_json: str) -> None:
    """Validate an announced model spec and training parameters.

    Raises:
        training.errors.SpecError: naming what is wrong (unknown model, bad
            hyper-parameter...); its ``reason`` is ``bad_spec``.
    """
    from training.local import TrainParams  # torch only when working
    from training.modelspec import ModelSpec

    ModelSpec.from_mapping(json_object(model_json, "model"))
    TrainParams.from_mapping(json_object(params_json, "train params"))


def train(
    model_json: str,
    params_json: str,
    model: bytes,
    chunks: Sequence[bytes],
    *,
    threads: int,
    should_stop: Callable[[], bool],
    nonce: bytes = b"",
    device: str = "cpu",
    release_chunks: bool = False,
) -> TrainResult:
    """Run one local training task (trainer side); blocking.

    ``release_chunks``: ``chunks`` is a list the caller is done with, emptied entry by
    entry as it is decoded (``training.local.train``).

    ``nonce``: the task's nonce; it replaces the seed by
    ``verification.task_seed(seed, nonce)``, which sets the data order. ``device``:
    ``cpu``, ``cuda`` or ``auto`` (``training.local.resolve_device``); the update
    comes back as CPU safetensors either way.
    """
    from protocols.job.verification import task_seed
    from training import local
    from training.modelspec import ModelSpec

    spec = ModelSpec.from_mapping(json_object(model_json, "model"))
    params = json_object(params_json, "train params")
    if threads:
        params["threads"] = threads
    if nonce:
        params["seed"] = task_seed(int(params.get("seed", 0)), nonce)
    return local.train(
        spec,
        model,
        chunks,
        local.TrainParams.from_mapping(params),
        should_stop=should_stop,
        device=device,
        release_chunks=release_chunks,
    )


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
        model, its parameters (the base's, without LoRA adapters), forward FLOPs and
        activation bytes per sample.

    Raises:
        training.errors.SpecError: as :func:`load_data` and :func:`model_spec_for`
            (``DataError`` names the file, row or column).
    """
    data = load_data(spec)
    model = model_spec_for(spec, data)
    if spec.initial_weights:
        initial_weights(spec, model)
    cost = model.cost()
    return {
        "train": len(data.train_y),
        "validation": len(data.val_y),
        "test": len(data.test_y),
        "classes": data.classes,
        "sample_shape": list(data.input_shape),
        "model": model.to_mapping(),
        "parameters": cost.params,
        "flops_per_sample": cost.flops,
        "activation_bytes_per_sample": 4 * cost.activations,
    }


def train_params_json(spec: JobSpec) -> str:
    """The training hyper-parameters trainers receive, as JSON."""
    return json.dumps(
        {
            "epochs": spec.epochs,
            "batch_size": spec.batch_size,
            "lr": spec.lr,
            "optimizer": spec.optimizer,
            "momentum": spec.momentum,
            "prox_mu": spec.prox_mu,
            "seed": spec.seed,
        },
        sort_keys=True,
    )


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


def _validation(spec: JobSpec) -> Any:
    from training.validate import ValidationConfig

    return ValidationConfig(norm_factor=spec.norm_factor, quality_margin=spec.quality_margin)


def check_update(prepared: Prepared, spec: JobSpec, global_model: bytes, update: bytes) -> str:
    """Validate one update as it arrives: structure, finiteness, progress, held-out quality.

    The norm check needs the whole round and happens in :func:`aggregate`. With
    ``spec.validate_updates`` off only the structure and progress are checked (a
    malformed update can never be aggregated, and an unchanged model earns nothing).

    Returns:
        "" when the update passes, else its reason code (``training.validate``).
    """
    from training import validate, weights
    from training.errors import TrainingError

    cfg = _validation(spec)
    global_state = weights.decode(global_model, prepared.model)
    try:
        update = _plain(prepared, spec, global_model, update)
    except TrainingError as exc:  # a malformed compressed update
        return exc.reason
    update = _whole(prepared, global_model, update)
    if update == b"":
        return "names"
    if not spec.validate_updates:
        verdict, state = validate.check_structure(update, spec=prepared.model, cfg=cfg)
        if state is not None:
            verdict = validate.check_progress(global_state, state, median_norm=None, cfg=cfg)
        return "" if verdict.ok else verdict.reason
    key = sha256(global_model)
    if prepared.global_loss[0] != key:
        from training.local import evaluate as _evaluate

        loss, _ = _evaluate(prepared.model, global_state, prepared.heldout_x, prepared.heldout_y)
        prepared.global_loss = (key, loss)
    verdict = validate.validate(
        global_state,
        update,
        spec=prepared.model,
        median_norm=None,
        heldout=(prepared.heldout_x, prepared.heldout_y),
        cfg=cfg,
        global_loss=prepared.global_loss[1],
    )
    return "" if verdict.ok else verdict.reason


def rerun(prepared: Prepared, spec: JobSpec, global_model: bytes, slot: int, nonce: bytes) -> bytes:
    """The owner trains ``slot``'s task itself, as a trainer must have (one thread).

    The owner's own thread count is put back when the last of its concurrent
    re-runs ends (``training.local.restored_threads``).
    """
    from training.local import restored_threads

    with restored_threads():
        return train(
            json.dumps(prepared.model.to_mapping(), sort_keys=True),
            train_params_json(spec),
            global_model,
            [blob for blob, _ in prepared.slots[slot]],
            threads=1,
            should_stop=lambda: False,
            nonce=nonce,
        ).weights


def replica_distance(
    prepared: Prepared, global_model: bytes, a: bytes, b: bytes, spec: JobSpec | None = None
) -> float:
    """``training.replicas.distance`` of two updates of the same task.

    In a job with compression (``spec.compression``) the distance of the sketches of
    their true deltas (``training.updatecodec.distance``): error feedback makes the
    transmitted delta depend on each trainer's history (docs/verification.md).
    ``a`` and ``b`` are each a checked compressed update or plain weights (the
    owner's re-run).
    """
    from training.replicas import distance

    if spec is not None and spec.compression != "none":
        from training import updatecodec

        return updatecodec.distance(prepared.model, global_model, a, b)
    a, b = _whole(prepared, global_model, a), _whole(prepared, global_model, b)
    return distance(prepared.model, global_model, a, b)


def compress_update(
    model_json: str, global_model: bytes, update: bytes, mode: str, fraction: float,
    residual: bytes = b"",
) -> tuple[bytes, bytes]:
    """A trainer's plain ``update`` compressed as ``mode`` (error-fed by ``residual``).

    Returns:
        (the bytes to upload, the residual to keep for the job's next task); blocking.
    """
    from training import updatecodec
    from training.modelspec import ModelSpec

    spec = ModelSpec.from_mapping(json_object(model_json, "model"))
    return updatecodec.pack(spec, global_model, update, mode, fraction, residual)


def _plain(prepared: Prepared, spec: JobSpec, global_model: bytes, update: bytes) -> bytes:
    """The plain update a compressed one stands for (``spec.compression``); else ``update``.

    Raises:
        training.compress.CompressionError: malformed (reason ``bad_compression``).
    """
    if spec.compression == "none":
        return update
    from training import updatecodec

    return updatecodec.unpack(
        prepared.model, global_model, update, spec.compression, spec.topk_fraction
    )


def _whole(prepared: Prepared, global_model: bytes, update: bytes) -> bytes:
    """A LoRA update (adapters only) put back into the global model; else ``update``.

    Bytes that are not exactly the model's adapters come back as ``b""``, which every
    check refuses as malformed.
    """
    if prepared.model.lora is None:
        return update
    from training import lora
    from training.errors import WeightsError

    try:
        return lora.expand(global_model, update, prepared.model)
    except WeightsError:
        return b""


def merged(model: bytes, rank: int, alpha: float) -> bytes:
    """A LoRA job's final model (safetensors) with its adapters folded into the base.

    Raises:
        ValueError: ``model`` is not safetensors, or an adapter does not fit its base.
    """
    from training import lora

    return lora.merge_bytes(model, rank, alpha)


@dataclass(frozen=True)
class Aggregated:
    """The outcome of :func:`aggregate`.

    Attributes:
        model: The new global model's bytes (unchanged when nothing was left).
        server_state: The rule's new server state.
        rejected: Reason code of each update id the round-wide checks refused.
        outvoted: Ids of valid updates the rule left out (e.g. Krum's).
    """

    model: bytes
    server_state: bytes | None
    rejected: dict[str, str]
    outvoted: set[str]


def aggregate(
    prepared: Prepared,
    spec: JobSpec,
    global_model: bytes,
    updates: Sequence[tuple[str, int, bytes]],
    server_state: bytes | None,
    removed: int = 0,
) -> Aggregated:
    """Validate the round as a whole (norm outliers, no progress), then aggregate.

    Args:
        prepared: The job's prepared data (model spec, held-out set).
        spec: The job (rule, rule parameters, validation switch).
        global_model: The round's global model bytes.
        updates: ``(id, samples, bytes)`` of each update accepted so far; ids are
            unique per round (two trainers may send identical bytes).
        server_state: The rule's saved server state, if any.
        removed: Updates of this round already rejected before it closed.
    """
    from training import aggregate as agg
    from training import validate, weights

    global_state = weights.decode(global_model, prepared.model)
    received = [
        (uid, _whole(prepared, global_model, _plain(prepared, spec, global_model, data)), n)
        for uid, n, data in updates
    ]
    cfg = _validation(spec)
    if spec.validate_updates:
        rv = validate.validate_round(
            global_state, received, spec=prepared.model, heldout=None, cfg=cfg
        )
    else:
        rv = validate.validate_round(
            global_state, received, spec=prepared.model, heldout=None, cfg=cfg,
            checks=("progress",),
        )
    accepted, rejected = rv.accepted, {uid: v.reason for uid, v in rv.rejected}
    if not accepted:
        return Aggregated(global_model, server_state, rejected, set())
    rule = agg.RuleConfig(name=spec.rule, seed=spec.seed, **dict(spec.rule_params))
    # ``f`` counts faulty updates among those submitted; every one validation already
    # removed is one fewer the rule must tolerate among the rest.
    f = max(0, rule.f - removed - len(rejected))
    while f > 0 and len(accepted) < dataclasses.replace(rule, f=f).need(len(accepted)):
        f -= 1
    rule = dataclasses.replace(rule, f=f)
    state = agg.ServerState.decode(server_state) if server_state else None
    if state is not None and state.rule != rule.name:
        state = None
    result = agg.aggregate(global_state, accepted, rule, state)
    outvoted = {u.id for u in accepted} - set(result.used_ids)
    return Aggregated(weights.encode(result.weights), result.state.encode(), rejected, outvoted)
