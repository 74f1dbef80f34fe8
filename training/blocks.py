"""Declarative architectures: a list of allowed blocks, checked and costed without torch.

A job's ``custom`` model is ``layers``, a list of tables each naming a block ``type``
and its settings; nothing else is ever built, so no code travels. :func:`check`
validates a list against the input it will read (shapes flow block to block; every
problem is a :class:`~training.errors.SpecError` naming ``layers[i].field``) and
:func:`cost` gives what the owner is shown at submit and what a trainer holds against
its limits: parameters, forward FLOPs and activation floats per sample.

Blocks (shapes without the batch; ``(f)`` a vector, ``(c, h, w)`` an image, ``(t, d)``
a sequence, ``(t)`` token ids):

===============  ==========================================  =======================
type             settings (default)                          shape
===============  ==========================================  =======================
``linear``       ``out``                                     (..., f) -> (..., out)
``conv``         ``out``, ``kernel`` (3), ``stride`` (1),    (c, h, w) -> (out, h', w')
                 ``padding`` (0)
``layernorm``    --                                          same (over the last dim;
                                                             over c, h, w for images)
``relu`` ``gelu`` ``tanh`` ``sigmoid``  --                   same
``dropout``      ``p`` (0.1)                                 same
``maxpool``      ``kernel`` (2)                              (c, h, w) -> (c, h/k, w/k)
``avgpool``
``flatten``      --                                          any -> (prod)
``reshape``      ``shape`` (list of ints)                    (f) -> shape
``embedding``    ``vocab``, ``dim``, ``positions`` (false)   (t) tokens -> (t, dim)
``lstm`` ``gru`` ``hidden``, ``layers`` (1)                  (t, d) -> (t, hidden)
``transformer``  ``heads``, ``ff`` (4 x d), ``dropout`` (0)  (t, d) -> (t, d), causal
``last``         --                                          (t, d) -> (d)
===============  ==========================================  =======================

The module is torch-free: the spec, the owner's submit check and the trainer's
budget read it before torch is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from training.errors import SpecError

MAX_BLOCKS = 64
MAX_DIM = 1 << 16
MAX_KERNEL = 31
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid")
_SETTINGS: dict[str, dict[str, Any]] = {
    "linear": {"out": None},
    "conv": {"out": None, "kernel": 3, "stride": 1, "padding": 0},
    "layernorm": {},
    **{a: {} for a in ACTIVATIONS},
    "dropout": {"p": 0.1},
    "maxpool": {"kernel": 2},
    "avgpool": {"kernel": 2},
    "flatten": {},
    "reshape": {"shape": None},
    "embedding": {"vocab": None, "dim": None, "positions": False},
    "lstm": {"hidden": None, "layers": 1},
    "gru": {"hidden": None, "layers": 1},
    "transformer": {"heads": None, "ff": 0, "dropout": 0.0},
    "last": {},
}
BLOCKS = tuple(_SETTINGS)
"""Every block type a model may use."""


@dataclass(frozen=True)
class Cost:
    """What one sample costs a model.

    Attributes:
        params: Trainable parameters.
        flops: Forward floating-point operations per sample (a multiply-add is 2).
        activations: Floats kept for the backward pass per sample (every block's output).
        out_shape: Shape of the model's output.
    """

    params: int
    flops: int
    activations: int
    out_shape: tuple[int, ...]


def _int(block: Mapping[str, Any], key: str, where: str, low: int = 1, high: int = MAX_DIM) -> int:
    v = block[key]
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise SpecError(f"{where}.{key}", f"must be an integer in [{low}, {high}], got {v!r}")
    return v


def normalise(layers: Any) -> list[dict[str, Any]]:
    """Every block with its defaults filled in, unknown types and settings refused.

    Raises:
        SpecError: ``layers`` (not a list, empty, too long) or ``layers[i].<field>``.
    """
    if not isinstance(layers, list | tuple) or not 1 <= len(layers) <= MAX_BLOCKS:
        raise SpecError("layers", f"must be a list of 1 to {MAX_BLOCKS} blocks")
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(raw, Mapping) or raw.get("type") not in _SETTINGS:
            raise SpecError(f"{where}.type", f"choose from {', '.join(BLOCKS)}")
        defaults = _SETTINGS[raw["type"]]
        extra = set(raw) - set(defaults) - {"type"}
        if extra:
            raise SpecError(f"{where}.{sorted(extra)[0]}", "unknown setting")
        block = {"type": raw["type"], **defaults, **{k: v for k, v in raw.items() if k != "type"}}
        for key, value in block.items():
            if value is None:
                raise SpecError(f"{where}.{key}", "required")
            if isinstance(value, list | tuple):
                block[key] = list(value)
        out.append(block)
    return out


def check(layers: Any, in_shape: Sequence[int], tokens: bool) -> Cost:
    """Validate ``layers`` reading samples of ``in_shape`` (token ids when ``tokens``).

    Returns:
        The model's :class:`Cost`.

    Raises:
        SpecError: naming ``layers[i].<field>`` and what is wrong.
    """
    blocks = normalise(layers)
    shape = tuple(in_shape)
    params = flops = acts = 0
    for i, b in enumerate(blocks):
        where = f"layers[{i}]"
        kind = b["type"]
        if tokens and i == 0 and kind != "embedding":
            raise SpecError(f"{where}.type", "a model reading tokens starts with an embedding")
        if kind == "embedding" and (i != 0 or not tokens):
            raise SpecError(f"{where}.type", "an embedding only reads token ids, first")
        shape, p, f = _step(b, shape, where)
        params, flops = params + p, flops + f
        acts += math.prod(shape)
    return Cost(params, flops, acts, shape)


def input_shapes(
    layers: Sequence[Mapping[str, Any]], in_shape: Sequence[int]
) -> list[tuple[int, ...]]:
    """The shape each block of checked ``layers`` reads."""
    shape, out = tuple(in_shape), []
    for i, b in enumerate(normalise(layers)):
        out.append(shape)
        shape = _step(b, shape, f"layers[{i}]")[0]
    return out


def _need(shape: tuple[int, ...], dims: int, where: str, what: str) -> None:
    if len(shape) != dims:
        raise SpecError(f"{where}.type", f"{what} reads {dims}-d samples, gets {shape}")


Step = tuple[tuple[int, ...], int, int]


def _linear(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    out = _int(b, "out", where)
    f_in = shape[-1] if shape else 1
    rows = math.prod(shape) // f_in
    return (*shape[:-1], out), f_in * out + out, 2 * rows * f_in * out


def _conv(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    _need(shape, 3, where, "conv")
    c, h, w = shape
    out, k = _int(b, "out", where), _int(b, "kernel", where, 1, MAX_KERNEL)
    s, pad = _int(b, "stride", where, 1, MAX_KERNEL), _int(b, "padding", where, 0, MAX_KERNEL)
    ho, wo = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
    if ho < 1 or wo < 1:
        raise SpecError(f"{where}.kernel", f"larger than the {h}x{w} input")
    return (out, ho, wo), c * out * k * k + out, 2 * c * k * k * out * ho * wo


def _layernorm(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    n = math.prod(shape)
    norm = n if len(shape) == 3 else shape[-1]
    return shape, 2 * norm, 5 * n


def _elementwise(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    if b["type"] == "dropout":
        p = b["p"]
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p < 1:
            raise SpecError(f"{where}.p", "must be in [0, 1)")
    return shape, 0, math.prod(shape)


def _pool(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    _need(shape, 3, where, b["type"])
    k = _int(b, "kernel", where, 1, MAX_KERNEL)
    c, h, w = shape
    if h < k or w < k:
        raise SpecError(f"{where}.kernel", f"larger than the {h}x{w} input")
    return (c, h // k, w // k), 0, math.prod(shape)


def _flatten(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    return (math.prod(shape),), 0, 0


def _reshape(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    new, n = b["shape"], math.prod(shape)
    if not isinstance(new, list) or not 1 <= len(new) <= 3 or any(
        isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in new
    ):
        raise SpecError(f"{where}.shape", "must be 1 to 3 positive integers")
    if math.prod(new) != n:
        raise SpecError(f"{where}.shape", f"{new} does not hold the {n} values of {shape}")
    return tuple(new), 0, 0


def _embedding(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    _need(shape, 1, where, "embedding")
    vocab, dim = _int(b, "vocab", where, 2), _int(b, "dim", where)
    if not isinstance(b["positions"], bool):
        raise SpecError(f"{where}.positions", "must be true or false")
    return (shape[0], dim), vocab * dim + (shape[0] * dim if b["positions"] else 0), 0


def _recurrent(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    kind = b["type"]
    _need(shape, 2, where, kind)
    t, d = shape
    h, layers = _int(b, "hidden", where), _int(b, "layers", where, 1, 8)
    gates = 4 if kind == "lstm" else 3
    p = sum(gates * (h * ((d if i == 0 else h) + h) + 2 * h) for i in range(layers))
    return (t, h), p, 2 * t * p


def _transformer(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    _need(shape, 2, where, "transformer")
    t, d = shape
    heads = _int(b, "heads", where, 1, 256)
    if d % heads:
        raise SpecError(f"{where}.heads", f"must divide the width {d}")
    ff = b["ff"] or 4 * d
    if isinstance(ff, bool) or not isinstance(ff, int) or not 1 <= ff <= MAX_DIM:
        raise SpecError(f"{where}.ff", f"must be an integer in [1, {MAX_DIM}]")
    drop = b["dropout"]
    if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop < 1:
        raise SpecError(f"{where}.dropout", "must be in [0, 1)")
    p = 4 * d * d + 4 * d + 4 * d + d * ff + ff + ff * d + d
    f = 2 * t * (4 * d * d + 2 * d * ff) + 4 * t * t * d
    return (t, d), p, f


def _last(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    _need(shape, 2, where, "last")
    return (shape[1],), 0, 0


_STEPS: dict[str, Callable[[Mapping[str, Any], tuple[int, ...], str], Step]] = {
    "linear": _linear, "conv": _conv, "layernorm": _layernorm, "dropout": _elementwise,
    **dict.fromkeys(ACTIVATIONS, _elementwise), "maxpool": _pool, "avgpool": _pool,
    "flatten": _flatten, "reshape": _reshape, "embedding": _embedding, "lstm": _recurrent,
    "gru": _recurrent, "transformer": _transformer, "last": _last,
}


def _step(b: Mapping[str, Any], shape: tuple[int, ...], where: str) -> Step:
    """Output shape, parameters and FLOPs of one block (its type already checked)."""
    return _STEPS[b["type"]](b, shape, where)


def preset(name: str, p: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A catalogue model's architecture in block form (its full hyper-parameters ``p``)."""
    if name == "logreg":
        return [{"type": "linear", "out": p["classes"]}]
    if name == "mlp":
        hidden = [[{"type": "linear", "out": h}, {"type": "relu"}] for h in p["hidden"]]
        return [*(b for pair in hidden for b in pair), {"type": "linear", "out": p["classes"]}]
    if name == "cnn":
        s, ch = p["image_size"], p["channels"]
        return [
            {"type": "reshape", "shape": [ch, s, s]},
            {"type": "conv", "out": p["conv1"], "kernel": 5, "padding": 2},
            {"type": "relu"},
            {"type": "maxpool", "kernel": 2},
            {"type": "conv", "out": p["conv2"], "kernel": 5, "padding": 2},
            {"type": "relu"},
            {"type": "maxpool", "kernel": 2},
            {"type": "flatten"},
            {"type": "linear", "out": p["dense"]},
            {"type": "relu"},
            {"type": "linear", "out": p["classes"]},
        ]
    if name == "char_lstm":
        return [
            {"type": "embedding", "vocab": p["vocab_size"], "dim": p["embed_dim"]},
            {"type": "lstm", "hidden": p["hidden_size"], "layers": p["num_layers"]},
            {"type": "last"},
            {"type": "linear", "out": p["vocab_size"]},
        ]
    raise SpecError("name", f"no preset {name!r}")
