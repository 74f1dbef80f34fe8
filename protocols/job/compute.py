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
from typing import TYPE_CHECKING, Any

from protocols.job.spec import JobSpec

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from training.local import TrainResult
    from training.models import ModelSpec

MAX_PARAMS_JSON = 16 * 1024
HELDOUT_SAMPLES = 1000


def sha256(data: bytes) -> str:
    """Lowercase hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _json_object(text: str, what: str) -> dict[str, Any]:
    """Decode a peer's small JSON object, or raise ``training.errors.SpecError``."""
    from training.errors import SpecError  # noqa: PLC0415 - torch-free, kept beside its use

    if len(text) > MAX_PARAMS_JSON:
        raise SpecError(what, f"larger than {MAX_PARAMS_JSON} bytes")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SpecError(what, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SpecError(what, "must be an object")
    return value


def warm_up() -> None:
    """Import the training stack (torch) ahead of the first task; blocking."""
    import training.local  # noqa: F401, PLC0415


def check_job(model_json: str, params_json: str) -> None:
    """Validate an announced model spec and training parameters.

    Raises:
        training.errors.SpecError: naming what is wrong (unknown model, bad
            hyper-parameter...); its ``reason`` is ``bad_spec``.
    """
    from training.local import TrainParams  # noqa: PLC0415 - torch only when working
    from training.models import ModelSpec  # noqa: PLC0415

    ModelSpec.from_mapping(_json_object(model_json, "model"))
    TrainParams.from_mapping(_json_object(params_json, "train params"))


def train(
    model_json: str,
    params_json: str,
    model: bytes,
    chunks: Sequence[bytes],
    *,
    threads: int,
    should_stop: Callable[[], bool],
) -> TrainResult:
    """Run one local training task (trainer side); blocking."""
    from training import local  # noqa: PLC0415
    from training.models import ModelSpec  # noqa: PLC0415

    spec = ModelSpec.from_mapping(_json_object(model_json, "model"))
    params = _json_object(params_json, "train params")
    if threads:
        params["threads"] = threads
    return local.train(
        spec, model, chunks, local.TrainParams.from_mapping(params), should_stop=should_stop
    )


def reason_of(exc: BaseException) -> str:
    """A short machine-readable reason code for a failed task."""
    name = type(exc).__name__
    if isinstance(exc, ValueError) and name == "ValueError":
        return "bad_spec"
    codes = {
        "HashMismatch": "hash_mismatch",
        "TooLarge": "oversize_data",
        "UrlRejected": "url_rejected",
        "ObjectMissing": "object_missing",
        "TransferFailed": "transfer_failed",
        "WeightsError": "bad_model",
        "ChunkError": "bad_chunk",
        "SpecError": "bad_spec",
        "TrainingCancelled": "cancelled",
    }
    return codes.get(name, "error")


def model_spec_for(spec: JobSpec) -> ModelSpec:
    """The catalogue model for ``spec``, with input size and classes set from its dataset."""
    from training.models import ModelSpec  # noqa: PLC0415

    side = 8 if spec.dataset == "digits" else 28
    params: dict[str, Any] = {}
    if spec.model in ("logreg", "mlp"):
        params["in_features"] = side * side
    elif spec.model == "cnn":
        params["image_size"] = side
    params.update(spec.model_params)
    return ModelSpec.from_mapping({"name": spec.model, "params": params})


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


def prepare(spec: JobSpec) -> Prepared:
    """Load the dataset, split it among ``spec.trainers`` slots, chunk each slot.

    Deterministic under ``spec.seed``: a resumed job prepares the same chunks.
    """
    import numpy as np  # noqa: PLC0415

    from training import chunks, datasets, partition, weights  # noqa: PLC0415

    model = model_spec_for(spec)
    data = datasets.load(spec.dataset, limit=spec.limit or None)
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
    n = min(HELDOUT_SAMPLES, len(data.test_y) // 2)
    return Prepared(
        model=model,
        slots=slots,
        heldout_x=data.test_x[:n],
        heldout_y=data.test_y[:n],
        test_x=data.test_x,
        test_y=data.test_y,
        initial=weights.initial(model, spec.seed),
    )


def evaluate(prepared: Prepared, model: bytes) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` on the job's test set."""
    from training.local import evaluate as _evaluate  # noqa: PLC0415

    return _evaluate(prepared.model, model, prepared.test_x, prepared.test_y)


def _validation(spec: JobSpec) -> Any:
    from training.validate import ValidationConfig  # noqa: PLC0415

    return ValidationConfig(norm_factor=spec.norm_factor, quality_margin=spec.quality_margin)


def check_update(
    prepared: Prepared, spec: JobSpec, global_model: bytes, update: bytes
) -> tuple[bool, str]:
    """Validate one update as it arrives: structure, finiteness, held-out quality.

    The norm check needs the whole round and happens in :func:`aggregate`. With
    ``spec.validate_updates`` off only the structure is checked (a malformed update
    can never be aggregated).

    Returns:
        (ok, reason code).
    """
    from training import validate, weights  # noqa: PLC0415

    cfg = _validation(spec)
    if not spec.validate_updates:
        structure, _ = validate.check_structure(update, spec=prepared.model, cfg=cfg)
        return structure.ok, structure.reason
    global_state = weights.decode(global_model, prepared.model)
    key = sha256(global_model)
    if prepared.global_loss[0] != key:
        from training.local import evaluate as _evaluate  # noqa: PLC0415

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
    return verdict.ok, verdict.reason


def aggregate(
    prepared: Prepared,
    spec: JobSpec,
    global_model: bytes,
    updates: Sequence[tuple[str, int, bytes]],
    server_state: bytes | None,
    removed: int = 0,
) -> tuple[bytes, bytes | None, set[str], set[str]]:
    """Validate the round as a whole (norm outliers), then aggregate with the job's rule.

    Args:
        prepared: The job's prepared data (model spec, held-out set).
        spec: The job (rule, rule parameters, validation switch).
        global_model: The round's global model bytes.
        updates: ``(sha256, samples, bytes)`` of each update accepted so far.
        server_state: The rule's saved server state, if any.
        removed: Updates of this round already rejected before it closed.

    Returns:
        (new global model bytes, new server state bytes, sha256 of the outliers
        rejected here, sha256 of valid updates the rule left out (e.g. Krum's)). With
        nothing left to aggregate the global model is returned unchanged.
    """
    from training import aggregate as agg  # noqa: PLC0415
    from training import validate, weights  # noqa: PLC0415

    global_state = weights.decode(global_model, prepared.model)
    received = [(sha, data, n) for sha, n, data in updates]
    if spec.validate_updates:
        rv = validate.validate_round(
            global_state, received, spec=prepared.model, heldout=None, cfg=_validation(spec)
        )
        accepted, outliers = rv.accepted, {sha for sha, _ in rv.rejected}
    else:
        accepted = [
            agg.Update(weights.decode(data, prepared.model), n, sha) for sha, data, n in received
        ]
        outliers = set()
    if not accepted:
        return global_model, server_state, outliers, set()
    rule = agg.RuleConfig(name=spec.rule, seed=spec.seed, **dict(spec.rule_params))
    # ``f`` counts faulty updates among those submitted; every one validation already
    # removed is one fewer the rule must tolerate among the rest.
    f = max(0, rule.f - removed - len(outliers))
    while f > 0 and len(accepted) < dataclasses.replace(rule, f=f).need(len(accepted)):
        f -= 1
    rule = dataclasses.replace(rule, f=f)
    state = agg.ServerState.decode(server_state) if server_state else None
    if state is not None and state.rule != rule.name:
        state = None
    result = agg.aggregate(global_state, accepted, rule, state)
    outvoted = {u.id for u in accepted} - set(result.used_ids)
    return weights.encode(result.weights), result.state.encode(), outliers, outvoted
