"""Torch modules for model specs: every model is an ``nn.Sequential`` of its blocks.

The spec itself (:class:`ModelSpec`, validated, torch-free) lives in
``training.modelspec`` and is re-exported here. :func:`build` makes the module of
any spec, a catalogue preset or ``custom`` blocks (``training.blocks``), with LoRA
adapters on its targeted linear maps when the spec has them. Every image model takes
flat float32 inputs and reshapes them itself, so every image dataset travels in one
format; token models take int64 windows and predict the next token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from training import blocks, catalogue
from training.errors import SpecError
from training.modelspec import ModelSpec, is_adapter

__all__ = ["ModelSpec", "build", "is_adapter", "parameter_count"]


class _LoraLinear(nn.Linear):
    """A linear map with low-rank adapters: ``W x + b + scale * B A x``.

    The base ``weight`` and ``bias`` keep their names; ``lora_a`` starts as a
    Kaiming-uniform draw and ``lora_b`` at zero, so the adapted model starts equal to
    its base.
    """

    def __init__(self, n_in: int, n_out: int, rank: int, alpha: float) -> None:
        super().__init__(n_in, n_out)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, n_in))
        self.lora_b = nn.Parameter(torch.zeros(n_out, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


Linear = Callable[[int, int], nn.Module]


def _linear_maker(lora: Mapping[str, Any] | None, target: str) -> Linear:
    if lora is None or target not in lora["targets"]:
        return nn.Linear
    rank, alpha = lora["rank"], lora["alpha"]
    return lambda n_in, n_out: _LoraLinear(n_in, n_out, rank, alpha)


class _Embedding(nn.Module):
    def __init__(self, vocab: int, dim: int, positions: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(positions, dim)) if positions else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.embed(x)
        return out + self.pos if self.pos is not None else out  # type: ignore[no-any-return]


class _Recurrent(nn.Module):
    def __init__(self, kind: str, d: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(d, hidden, layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]  # type: ignore[no-any-return]


class _Attention(nn.Module):
    """Causal multi-head self-attention with plain ``qkv`` and ``out`` projections."""

    def __init__(self, d: int, heads: int, dropout: float, linear: Linear = nn.Linear) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = linear(d, 3 * d)
        self.out = linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        y = nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        return self.out(y.transpose(1, 2).reshape(b, t, d))  # type: ignore[no-any-return]


class _Transformer(nn.Module):
    """A pre-norm transformer block: causal attention and a GELU feed-forward."""

    def __init__(
        self, d: int, heads: int, ff: int, dropout: float,
        lora: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = _Attention(d, heads, dropout, _linear_maker(lora, "attention"))
        lin = _linear_maker(lora, "feedforward")
        self.ff = nn.Sequential(lin(d, ff), nn.GELU(), lin(ff, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.ff(self.ln2(x)))  # type: ignore[no-any-return]


class _Last(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1]


_ACTIVATIONS: Mapping[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
}


def _block(
    b: Mapping[str, Any], shape: tuple[int, ...], lora: Mapping[str, Any] | None = None
) -> nn.Module:
    """The torch module of one checked block reading ``shape`` (``lora``: adapters)."""
    kind = b["type"]
    if kind == "linear":
        return _linear_maker(lora, "linear")(shape[-1], b["out"])
    if kind == "conv":
        return nn.Conv2d(shape[0], b["out"], b["kernel"], b["stride"], b["padding"])
    if kind == "layernorm":
        return nn.LayerNorm(list(shape) if len(shape) == 3 else shape[-1])
    if kind in _ACTIVATIONS:
        return _ACTIVATIONS[kind]()
    if kind == "dropout":
        return nn.Dropout(b["p"])
    if kind in ("maxpool", "avgpool"):
        return (nn.MaxPool2d if kind == "maxpool" else nn.AvgPool2d)(b["kernel"])
    if kind == "flatten":
        return nn.Flatten(1)
    if kind == "reshape":
        return nn.Unflatten(1, tuple(b["shape"]))
    if kind == "embedding":
        return _Embedding(b["vocab"], b["dim"], shape[0] if b["positions"] else 0)
    if kind in ("lstm", "gru"):
        return _Recurrent(kind, shape[-1], b["hidden"], b["layers"])
    if kind == "transformer":
        return _Transformer(shape[-1], b["heads"], b["ff"] or 4 * shape[-1], b["dropout"], lora)
    return _Last()


def build(spec: ModelSpec) -> nn.Module:
    """Make a freshly initialised module for ``spec`` (uses torch's global RNG).

    Every model, catalogue preset or custom, is built the same way: one
    ``nn.Sequential`` of its blocks (``spec.layers``), so state-dict names are
    ``<block index>.<tensor>``.

    Raises:
        SpecError: ``spec.name`` is not in the catalogue.
    """
    if spec.name not in catalogue.MODELS:
        raise SpecError("name", f"unknown model {spec.name!r}")
    layers = blocks.normalise(spec.layers)
    shapes = blocks.input_shapes(layers, spec.input_shape)
    lora = spec.lora
    return nn.Sequential(*(_block(b, sh, lora) for b, sh in zip(layers, shapes, strict=True)))


def parameter_count(spec: ModelSpec) -> int:
    """Number of trainable parameters of ``spec``'s architecture."""
    return sum(p.numel() for p in build(spec).parameters())
