"""The owner's heavy work on updates, as blocking functions for worker threads.

Checks each update as it arrives, re-runs a slot's task, compares replicas and
aggregates a round. It imports ``training`` (torch) inside the functions only
(``protocols.job.compute``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from protocols.job.compute import sha256, train, train_params_json
from protocols.job.jobdata import Prepared
from protocols.job.spec import JobSpec


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


def rerun(
    prepared: Prepared, spec: JobSpec, global_model: bytes, slot: int, nonce: bytes,
    should_stop: Callable[[], bool] = lambda: False,
) -> bytes:
    """The owner trains ``slot``'s task itself, as a trainer must have (one thread).

    The owner's own thread count is put back when the last of its concurrent
    re-runs ends (``training.local.restored_threads``). A true ``should_stop()``
    ends it at the next batch (``TrainingCancelled``).
    """
    from training.local import restored_threads

    with restored_threads():
        return train(
            json.dumps(prepared.model.to_mapping(), sort_keys=True),
            train_params_json(spec),
            global_model,
            [blob for blob, _ in prepared.slots[slot]],
            threads=1,
            should_stop=should_stop,
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
    rule = agg.RuleConfig(name=spec.rule, seed=spec.seed, **dataclasses.asdict(spec.rule_params))
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
