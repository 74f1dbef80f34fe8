"""Verification stays sound with compressed, error-fed updates (docs/verification.md).

Real training of one digits task through ``protocols.job.compute`` and ``assess``, as the trainer
and the owner run it. Error feedback makes what a trainer transmits depend on its
own history (its residual), so two honest replicas of one task transmit different
deltas; the owner compares the sketches of their true deltas instead, which the
residual cannot move. A lazy trainer (a tenth of its data) is still caught by the
owner's re-run, and a malformed compressed update is refused with a reason code.
"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load, save

from protocols.job import assess, compute, jobdata
from protocols.job.spec import JobSpec, from_mapping
from protocols.job.verification import DEFAULT_TOLERANCE
from training import chunks as chunk_codec
from training import replicas

JOB = {"model": "logreg", "dataset": "digits", "epochs": 2, "lr": 0.1, "batch_size": 16,
       "partition": "iid", "chunk_samples": 400, "trainers": 2, "redundancy": 1.0}
NONCE = b"n" * 16
CHARGE_ABOVE = 0.2  # OwnerConfig.rerun_charge_above's default


def _train(prepared: jobdata.Prepared, spec: JobSpec, blobs: list[bytes], nonce: bytes) -> bytes:
    return compute.train(
        json.dumps(prepared.model.to_mapping(), sort_keys=True), compute.train_params_json(spec),
        prepared.initial, blobs, threads=1, should_stop=lambda: False, nonce=nonce,
    ).weights


@pytest.fixture(scope="module")
def job() -> tuple[jobdata.Prepared, dict[str, JobSpec]]:
    base = from_mapping(JOB)
    prepared = jobdata.prepare(base)
    specs = {m: from_mapping({**JOB, "compression": m, "topk_fraction": 0.05})
             for m in ("fp16", "bf16", "int8", "topk")}
    return prepared, specs


@pytest.mark.parametrize("mode", ["fp16", "bf16", "int8", "topk"])
def test_honest_replicas_agree_and_a_lazy_trainer_is_caught(
    job: tuple[jobdata.Prepared, dict[str, JobSpec]], mode: str
) -> None:
    prepared, specs = job
    spec, g = specs[mode], prepared.initial
    model_json = json.dumps(prepared.model.to_mapping(), sort_keys=True)
    slot0 = [b for b, _ in prepared.slots[0]]
    honest = _train(prepared, spec, slot0, NONCE)
    # Replica A trained another task before (slot 1): it carries that task's residual.
    other = _train(prepared, spec, [b for b, _ in prepared.slots[1]], b"m" * 16)
    _, residual = compute.compress_update(model_json, g, other, mode, spec.topk_fraction)
    a, _ = compute.compress_update(model_json, g, honest, mode, spec.topk_fraction, residual)
    b, _ = compute.compress_update(model_json, g, honest, mode, spec.topk_fraction)
    assert a != b
    assert assess.check_update(prepared, spec, g, a) == ""
    assert assess.check_update(prepared, spec, g, b) == ""
    mine = _train(prepared, spec, slot0, NONCE)  # the owner's re-run: one thread, same nonce
    assert assess.replica_distance(prepared, g, a, b, spec) <= DEFAULT_TOLERANCE
    assert assess.replica_distance(prepared, g, mine, a, spec) <= DEFAULT_TOLERANCE
    # What the residual does to a comparison of the transmitted deltas themselves
    # (half precision's residual is too small to show at this tolerance):
    sent_a, sent_b = (assess._plain(prepared, spec, g, x) for x in (a, b))
    if mode in ("int8", "topk"):
        assert replicas.distance(prepared.model, g, sent_a, sent_b) > DEFAULT_TOLERANCE

    x, y = chunk_codec.decode_chunk(slot0[0])
    n = max(1, len(y) // 10)
    lazy_plain = _train(prepared, spec, [chunk_codec.encode_chunk(x[:n], y[:n])], NONCE)
    lazy, _ = compute.compress_update(model_json, g, lazy_plain, mode, spec.topk_fraction)
    assert assess.check_update(prepared, spec, g, lazy) == ""  # a plausible update...
    assert assess.replica_distance(prepared, g, mine, lazy, spec) > CHARGE_ABOVE  # ...caught


def test_a_malformed_compressed_update_is_refused_with_a_reason(
    job: tuple[jobdata.Prepared, dict[str, JobSpec]],
) -> None:
    prepared, specs = job
    spec, g = specs["int8"], prepared.initial
    model_json = json.dumps(prepared.model.to_mapping(), sort_keys=True)
    blob, _ = compute.compress_update(
        model_json, g, _train(prepared, spec, [prepared.slots[0][0][0]], NONCE), "int8", 0.0
    )
    parts = dict(load(blob))
    scale = next(k for k in parts if k.startswith("s/"))
    bad = {
        "negative scale": {**parts, scale: -parts[scale]},
        "missing tensor": {k: v for k, v in parts.items() if k != scale},
    }
    for what, tensors in bad.items():
        assert assess.check_update(prepared, spec, g, bytes(save(tensors))) == (
            "bad_compression"), what
    assert assess.check_update(prepared, spec, g, blob[:-7]) == "bad_compression"
    assert assess.check_update(prepared, spec, g, b"\xff" * 64) == "bad_compression"
    # plain weights in a compressed job, and an update of another form
    assert assess.check_update(prepared, spec, g, g) == "bad_compression"
    other, _ = compute.compress_update(model_json, g, g, "fp16", 0.0)
    assert assess.check_update(prepared, spec, g, other) == "bad_compression"
    # a transmitted delta that does not match its sketch (the work compared)
    parts = {k: -v if k.startswith("q/") else v for k, v in parts.items()}
    assert assess.check_update(prepared, spec, g, bytes(save(parts))) == "bad_compression"
