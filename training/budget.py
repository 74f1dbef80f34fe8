"""What a training task would cost, estimated without torch, and the trainer's limits.

A trainer checks a task against its own :class:`Limits` before it imports torch or
allocates anything: the owner is a stranger, and a model spec, a batch size or an
epoch count can each exhaust a machine. The figures come from the catalogue's
architectures (:mod:`training.catalogue`) by formula:

- ``params``: trainable parameters (exactly what torch would allocate);
- ``activation_bytes``: float32 activations of one batch kept for the backward pass,
  doubled for their gradients (an estimate, within a small factor of the truth);
- ``sample_epochs``: samples times epochs, the work of one task;
- ``threads``: the torch threads the task asks for (0 = the trainer's own choice).

The module is torch-free, like the catalogue it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from training import catalogue
from training.errors import SpecError, TrainingError

_FLOAT_BYTES = 4
#: Activations are kept for backward and get a gradient of the same size.
_BACKWARD_FACTOR = 2


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
    """

    max_params: int = 50_000_000
    max_activation_bytes: int = 2 * 1024**3
    max_sample_epochs: int = 10_000_000
    max_threads: int = 64


@dataclass(frozen=True)
class Cost:
    """What one task would take (see the module docstring for each figure)."""

    params: int
    activation_bytes: int
    sample_epochs: int
    threads: int


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


def _linear(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def model_cost(name: str, raw: Mapping[str, Any]) -> tuple[int, int, int]:
    """Parameters, activation floats per sample and input bytes per sample of a model.

    Args:
        name: Catalogue model name.
        raw: Its hyper-parameters as sent (catalogue defaults fill the gaps).

    Raises:
        SpecError: Unknown model, or a parameter that is not a non-negative integer.
    """
    p = _params_of(name, raw)
    if name == "logreg":
        n, c = p["in_features"], p["classes"]
        return _linear(n, c), n + c, n * _FLOAT_BYTES
    if name == "mlp":
        widths = [p["in_features"], *p["hidden"], p["classes"]]
        params = sum(_linear(a, b) for a, b in zip(widths, widths[1:], strict=False))
        # Each hidden layer keeps its linear output and its ReLU output.
        return params, widths[0] + 2 * sum(p["hidden"]) + widths[-1], widths[0] * _FLOAT_BYTES
    if name == "cnn":
        s, ch, c1, c2, d = p["image_size"], p["channels"], p["conv1"], p["conv2"], p["dense"]
        params = (
            ch * 25 * c1 + c1 + c1 * 25 * c2 + c2 + _linear(c2 * (s // 4) ** 2, d)
        ) + _linear(d, p["classes"])
        acts = ch * s * s + 2 * c1 * s * s + c1 * (s // 2) ** 2
        acts += 2 * c2 * (s // 2) ** 2 + c2 * (s // 4) ** 2 + 2 * d + p["classes"]
        return params, acts, ch * s * s * _FLOAT_BYTES
    # char_lstm: embedding, LSTM (4 gates, two bias vectors per layer), linear head.
    v, t, e, h, layers = (
        p["vocab_size"], p["seq_len"], p["embed_dim"], p["hidden_size"], p["num_layers"]
    )  # fmt: skip
    lstm = sum(4 * h * ((e if i == 0 else h) + h) + 8 * h for i in range(layers))
    acts = t * e + t * layers * 6 * h + v
    return v * e + lstm + _linear(h, v), acts, t * 8


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
    epochs = _int(train.get("epochs", 1), "epochs")
    batch = _int(train.get("batch_size", 32), "batch_size")
    threads = _int(train.get("threads", 0), "threads")
    most_samples = max(samples, data_bytes // max(1, sample_bytes))
    return Cost(
        params=params,
        activation_bytes=acts * min(batch, max(1, most_samples)) * _FLOAT_BYTES * _BACKWARD_FACTOR,
        sample_epochs=most_samples * epochs,
        threads=threads,
    )


def check(cost: Cost, limits: Limits) -> None:
    """Raise ``OverBudget`` naming the first limit ``cost`` exceeds."""
    for limit, need, allowed in (
        ("max_params", cost.params, limits.max_params),
        ("max_activation_bytes", cost.activation_bytes, limits.max_activation_bytes),
        ("max_sample_epochs", cost.sample_epochs, limits.max_sample_epochs),
        ("max_threads", cost.threads, limits.max_threads),
    ):
        if need > allowed:
            raise OverBudget(limit, need, allowed)
