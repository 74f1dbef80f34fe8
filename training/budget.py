"""What a training task would cost, estimated without torch, and the trainer's limits.

A trainer checks a task against its own :class:`Limits` before it imports torch or
allocates anything: the owner is a stranger, and a model spec, a batch size or an
epoch count can each exhaust a machine. The figures come from the model's blocks
(:mod:`training.blocks`: a custom architecture's own, or a catalogue model's preset):

- ``params``: trainable parameters (exactly what torch would allocate);
- ``activation_bytes``: float32 activations of one batch kept for the backward pass,
  doubled for their gradients (an estimate, within a small factor of the truth);
- ``sample_epochs``: samples times epochs, the work of one task;
- ``threads``: the torch threads the task asks for (0 = the trainer's own choice);
- ``flops``: forward FLOPs per sample times 3 (forward and backward) times
  ``sample_epochs``.

The module is torch-free, like the catalogue it reads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from training import blocks, catalogue
from training.errors import SpecError, TrainingError

_FLOAT_BYTES = 4
#: Activations are kept for backward and get a gradient of the same size.
_BACKWARD_FACTOR = 2
#: A training step costs about three forward passes (forward, two for backward).
_TRAIN_FLOPS_FACTOR = 3


class OverBudget(TrainingError):
    """A task costs more than the trainer's limits allow.

    Attributes:
        limit: The limit exceeded (``max_params``, ``max_activation_bytes``...).
        need: What the task would need.
        allowed: What the limit allows.
    """

    reason = "over_budget"

    def __init__(self, limit: str, need: int, allowed: int) -> None:
        super().__init__(f"task over budget: {limit} needs {need}, allowed {allowed}")
        self.limit = limit
        self.need = need
        self.allowed = allowed


@dataclass(frozen=True)
class Limits:
    """A trainer's compute and memory budget for one task.

    Attributes:
        max_params: Most trainable parameters of the model.
        max_activation_bytes: Most activation memory of one batch (estimate).
        max_sample_epochs: Most samples times epochs.
        max_threads: Most torch threads a task may ask for.
        max_flops: Most floating-point operations of a whole task (forward and
            backward over every sample and epoch).
    """

    max_params: int = 50_000_000
    max_activation_bytes: int = 2 * 1024**3
    max_sample_epochs: int = 10_000_000
    max_threads: int = 64
    max_flops: int = 10**15


@dataclass(frozen=True)
class Cost:
    """What one task would take (see the module docstring for each figure)."""

    params: int
    activation_bytes: int
    sample_epochs: int
    threads: int
    flops: int = 0


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(field, "must be a non-negative integer")
    return value


def _params_of(name: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    model = catalogue.MODELS.get(name)
    if model is None:
        raise SpecError("name", "unknown model")
    out: dict[str, Any] = {}
    for key, param in model.params.items():
        value = raw.get(key, param.default)
        if param.kind == "ints":
            if not isinstance(value, list | tuple) or len(value) > catalogue.MAX_LAYERS:
                raise SpecError(f"params.{key}", "must be a short list of integers")
            out[key] = tuple(_int(v, f"params.{key}") for v in value)
        else:
            out[key] = _int(value, f"params.{key}")
    return out


_INPUT_SHAPES = {
    "logreg": lambda p: (p["in_features"],),
    "mlp": lambda p: (p["in_features"],),
    "cnn": lambda p: (p["channels"] * p["image_size"] ** 2,),
    "char_lstm": lambda p: (p["seq_len"],),
}


def model_blocks(name: str, raw: Mapping[str, Any]) -> tuple[list[Any], tuple[int, ...], bool]:
    """A model's blocks, input shape and whether it reads tokens, from its announced form.

    Raises:
        SpecError: Unknown model, or a parameter or block the estimate cannot read.
    """
    if name == "custom":
        shape, tokens = raw.get("in_shape"), raw.get("tokens", False)
        if not isinstance(shape, list | tuple) or not 1 <= len(shape) <= 3:
            raise SpecError("params.in_shape", "must be 1 to 3 positive integers")
        dims = tuple(_int(d, "params.in_shape") for d in shape)
        if not isinstance(tokens, bool):
            raise SpecError("params.tokens", "must be true or false")
        return blocks.normalise(raw.get("layers")), dims, tokens
    p = _params_of(name, raw)
    return blocks.preset(name, p), _INPUT_SHAPES[name](p), name == "char_lstm"


def model_cost(name: str, raw: Mapping[str, Any]) -> tuple[int, int, int]:
    """Parameters, activation floats per sample and fewest input bytes per sample of a model.

    The figures are :func:`training.blocks.check`'s (the input counts as an
    activation); ``flops`` per sample is :func:`model_flops`.

    Args:
        name: Catalogue model name (``custom``: ``raw`` holds ``layers``, ``in_shape``
            and ``tokens``).
        raw: Its hyper-parameters as sent (catalogue defaults fill the gaps).

    Raises:
        SpecError: Unknown model, or a parameter or block the estimate cannot read.
    """
    layers, shape, tokens = model_blocks(name, raw)
    cost = blocks.check(layers, shape, tokens)
    n_in = math.prod(shape)
    # Input bytes in the smallest form a chunk may store: uint8 features (training.chunks).
    return cost.params, cost.activations + n_in, n_in * (8 if tokens else 1)


def adapter_params(name: str, raw: Mapping[str, Any], lora: Mapping[str, Any]) -> int:
    """LoRA adapter parameters (``lora_a`` and ``lora_b``) the model gains with ``lora``.

    Each adapted ``n_in -> n_out`` projection adds ``rank * (n_in + n_out)``: linear
    blocks for the ``linear`` target, a transformer's ``qkv`` and ``out`` for
    ``attention``, its two feed-forward layers for ``feedforward``
    (``training.models`` builds exactly these).
    """
    layers, shape, _tokens = model_blocks(name, raw)
    rank, targets = int(lora["rank"]), set(lora["targets"])
    pairs: list[tuple[int, int]] = []
    for b, sh in zip(layers, blocks.input_shapes(layers, shape), strict=True):
        d = sh[-1]
        if b["type"] == "linear" and "linear" in targets:
            pairs.append((d, b["out"]))
        elif b["type"] == "transformer":
            if "attention" in targets:
                pairs += [(d, 3 * d), (d, d)]
            if "feedforward" in targets:
                ff = b["ff"] or 4 * d
                pairs += [(d, ff), (ff, d)]
    return sum(rank * (n_in + n_out) for n_in, n_out in pairs)


def model_flops(name: str, raw: Mapping[str, Any]) -> int:
    """Forward FLOPs per sample (a multiply-add is 2), as :func:`model_cost` reads it."""
    layers, shape, tokens = model_blocks(name, raw)
    return blocks.check(layers, shape, tokens).flops


def estimate(
    model: Mapping[str, Any], train: Mapping[str, Any], data_bytes: int, samples: int
) -> Cost:
    """The cost of training ``model`` with ``train`` parameters on a task's chunks.

    Args:
        model: The announced ``{"name": ..., "params": {...}}`` mapping.
        train: The announced training parameters (``epochs``, ``batch_size``,
            ``threads``; catalogue defaults otherwise).
        data_bytes: Total bytes of the task's chunks; it bounds the real sample count
            whatever the owner claims (every sample takes its input's bytes).
        samples: The sample count the owner claims.

    Raises:
        SpecError: A model or parameter the estimate cannot read.
    """
    name = model.get("name")
    raw = model.get("params", {})
    if not isinstance(name, str) or not isinstance(raw, Mapping):
        raise SpecError("model", "must be {name, params}")
    params, acts, sample_bytes = model_cost(name, raw)
    flops = model_flops(name, raw)
    epochs = _int(train.get("epochs", 1), "epochs")
    batch = _int(train.get("batch_size", 32), "batch_size")
    threads = _int(train.get("threads", 0), "threads")
    most_samples = max(samples, data_bytes // max(1, sample_bytes))
    return Cost(
        params=params,
        activation_bytes=acts * min(batch, max(1, most_samples)) * _FLOAT_BYTES * _BACKWARD_FACTOR,
        sample_epochs=most_samples * epochs,
        threads=threads,
        flops=flops * _TRAIN_FLOPS_FACTOR * most_samples * epochs,
    )


def check(cost: Cost, limits: Limits) -> None:
    """Raise ``OverBudget`` naming the first limit ``cost`` exceeds."""
    for limit, need, allowed in (
        ("max_params", cost.params, limits.max_params),
        ("max_activation_bytes", cost.activation_bytes, limits.max_activation_bytes),
        ("max_sample_epochs", cost.sample_epochs, limits.max_sample_epochs),
        ("max_threads", cost.threads, limits.max_threads),
        ("max_flops", cost.flops, limits.max_flops),
    ):
        if need > allowed:
            raise OverBudget(limit, need, allowed)
