"""Compressed updates as bytes: what the trainer uploads and what the owner rebuilds.

The tensor work is ``training.compress``; this module speaks in the bytes the job
protocol moves: the global model and a plain update are safetensors of the job's
model (a LoRA job's plain update holds its adapters only), the residual is
safetensors of float32 tensors.

The owner rebuilds the plain update a compressed one stands for (:func:`unpack`),
so validation, aggregation and the LoRA expansion run on it unchanged, and it
checks that the transmitted delta agrees with the sketch of the true delta the
trainer sent beside it (:data:`BINDING_BOUND`): the comparisons of verification
judge the sketch, and this ties what is aggregated to what was compared. Top-k
cannot be tied that way (what it leaves out waits in the residual, unbounded), so a
top-k update is tied to its work by validation alone (docs/verification.md).
"""

from __future__ import annotations

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from training import compress, models, weights
from training.compress import CompressionError

BINDING_BOUND = {"fp16": 0.05, "bf16": 0.05, "int8": 0.25}
"""Largest relative distance between the sketches of the transmitted and the true
delta (the residuals carried in and left out) a quantised update may show. Measured
on honest MNIST updates: fp16 < 5e-4, bf16 0.002, int8 0.012; a transmitted delta
unrelated to the work measures about 1 or more (docs/verification.md)."""


def plain_layout(spec: models.ModelSpec) -> weights.Layout:
    """The tensors of a plain update of ``spec``: the adapters of a LoRA model, else all."""
    layout = weights.layout(spec)
    if spec.lora is None:
        return layout
    return tuple(e for e in layout if models.is_adapter(e[0]))


def pack(
    spec: models.ModelSpec,
    global_model: bytes,
    update: bytes,
    mode: str,
    fraction: float,
    residual: bytes = b"",
) -> tuple[bytes, bytes]:
    """Compress the trainer's own plain ``update`` of ``global_model``; blocking.

    Args:
        spec: The job's model.
        global_model: The round's model (verified by its hash).
        update: The plain update training produced.
        mode: The job's compression; fraction: its top-k share.
        fraction: The top-k share.
        residual: The residual an earlier round left (b"": none).

    Returns:
        (compressed update, new residual), both bytes.
    """
    base = weights.decode(global_model, spec)
    plain = weights.decode_layout(update, plain_layout(spec))
    carried = {k: v for k, v in _st_load(residual).items()} if residual else None
    if carried is not None and any(
        k not in plain or v.shape != plain[k].shape for k, v in carried.items()
    ):
        carried = None  # another model's residual: start afresh
    blob, left = compress.encode(
        plain, base, mode, fraction=fraction, residual=carried,
        seed=compress.sketch_seed(weights.sha256(global_model)),
    )
    return blob, bytes(_st_save({k: v.contiguous() for k, v in left.items()}))


def unpack(
    spec: models.ModelSpec, global_model: bytes, blob: bytes, mode: str, fraction: float,
    *, max_bytes: int = weights.DEFAULT_MAX_BYTES,
) -> bytes:
    """The plain update an untrusted compressed ``blob`` stands for; blocking.

    Raises:
        CompressionError: as ``training.compress.decode``, or the transmitted delta
            strays from the sketch of the true one beyond :data:`BINDING_BOUND`.
    """
    base = weights.decode(global_model, spec)
    layout = plain_layout(spec)
    state, claimed = compress.decode(blob, base, layout, mode, fraction=fraction,
                                     max_bytes=max_bytes)
    bound = BINDING_BOUND.get(mode)
    if bound is not None:
        seed = compress.sketch_seed(weights.sha256(global_model))
        sent = compress.sketch({k: state[k].double() - base[k].double() for k in state}, seed)
        if compress.relative_distance(sent, claimed) > bound:
            raise CompressionError("the transmitted delta does not match its sketch")
    return weights.encode(state)


def true_sketch(spec: models.ModelSpec, global_model: bytes, update: bytes) -> torch.Tensor:
    """The sketch of an update's true delta.

    Carried by a compressed update (already checked by :func:`unpack`); computed
    from a plain one (the owner's re-run).
    """
    carried = compress.stored_sketch(update)
    if carried is not None:
        return carried
    base = weights.decode(global_model, spec)
    plain = weights.decode_layout(update, plain_layout(spec))
    seed = compress.sketch_seed(weights.sha256(global_model))
    return compress.sketch({k: plain[k].double() - base[k].double() for k in plain}, seed)


def distance(spec: models.ModelSpec, global_model: bytes, a: bytes, b: bytes) -> float:
    """Relative L2 distance of two updates' true deltas, measured on their sketches."""
    return compress.relative_distance(
        true_sketch(spec, global_model, a), true_sketch(spec, global_model, b)
    )
