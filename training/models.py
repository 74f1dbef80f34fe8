"""Catalogue models made real: validated hyper-parameters and torch modules.

A job never ships code. It names a model of ``training.catalogue.MODELS`` (which
declares every model's hyper-parameters, defaults and bounds) plus hyper-parameters;
:meth:`ModelSpec.from_mapping` validates them (unknown name, unknown or out-of-range
parameter -> :class:`~training.errors.SpecError`) and :func:`build` makes the module.

Every image model takes flat float32 inputs of ``in_features`` values (an 8x8 digits
image is 64 features, an MNIST image 784); the CNN reshapes them to
``channels x image_size x image_size`` itself, so every image dataset travels in one
format. The text model takes int64 token windows of ``seq_len`` and predicts the next
token.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from pydantic import BaseModel, Field
from torch import nn

import distro_schema
from training import blocks, catalogue
from training.errors import SpecError


@functools.cache
def _params_model(name: str) -> type[BaseModel]:
    """The strict schema of one catalogue model's hyper-parameters."""
    fields: dict[str, tuple[Any, Any]] = {}
    for key, p in catalogue.MODELS[name].params.items():
        one = Annotated[int, Field(ge=p.low, le=p.high)]
        if p.kind == "ints":
            many = Annotated[list[one], Field(min_length=1, max_length=catalogue.MAX_LAYERS)]
            fields[key] = (many, list(p.default) if isinstance(p.default, tuple) else p.default)
        else:
            fields[key] = (one, p.default)
    return distro_schema.model_of(f"{name}_params", fields, catalogue.MODELS[name].description)


def _lora(raw: Any) -> Mapping[str, Any] | None:
    """A checked ``{"rank", "alpha", "targets"}`` mapping, or None when absent or rank 0."""
    if raw is None:
        return None
    spec = distro_schema.load(catalogue.LoraSpec, raw, error=SpecError, prefix="lora")
    if not spec.rank:
        return None
    return types.MappingProxyType(
        {"rank": spec.rank, "alpha": spec.alpha, "targets": tuple(spec.targets)}
    )


def is_adapter(name: str) -> bool:
    """Whether a state-dict name is a LoRA adapter tensor."""
    return name.endswith((".lora_a", ".lora_b"))


def _param_error(field: str, reason: str) -> SpecError:
    """Name the parameter, not the list item (``params.hidden``, not ``params.hidden[0]``)."""
    return SpecError(field.split("[")[0], reason)


@dataclass(frozen=True)
class ModelSpec:
    """A validated architecture name plus its full hyper-parameters (defaults filled in).

    Build one with :meth:`from_mapping`; the constructor trusts its arguments.

    Attributes:
        name: Catalogue name.
        params: Every hyper-parameter of the architecture, read-only.
        task: ``classification`` (cross-entropy over ``classes`` outputs; next-token
            prediction is this too) or ``regression`` (mean squared error of output 0).
        lora: ``{"rank", "alpha", "targets"}`` (``training.catalogue.LoraSpec``) when
            the base is frozen and only low-rank adapters train, else None.
    """

    name: str
    params: Mapping[str, Any]
    task: str = "classification"
    lora: Mapping[str, Any] | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Validate an untrusted ``{"name": ..., "params": {...}}`` mapping.

        Raises:
            SpecError: Unknown name, unknown parameter, wrong type or out-of-range value,
                or inconsistent values (e.g. CNN ``image_size`` not divisible by 4).
        """
        if not isinstance(data, Mapping):
            raise SpecError("spec", "must be a mapping")
        extra = set(data) - {"name", "params", "task", "lora"}
        if extra:
            raise SpecError(str(sorted(extra)[0]), "unknown spec field")
        name = data.get("name")
        if not isinstance(name, str) or name not in catalogue.MODELS:
            raise SpecError("name", f"unknown model {name!r}; known: {sorted(catalogue.MODELS)}")
        task = data.get("task", "classification")
        if task not in catalogue.TRAIN_TASKS:
            raise SpecError("task", f"choose from {', '.join(catalogue.TRAIN_TASKS)}")
        lora = _lora(data.get("lora"))
        if lora is not None:
            plain = {k: v for k, v in data.items() if k != "lora"}
            return dataclasses.replace(cls.from_mapping(plain), lora=lora)
        raw = data.get("params", {})
        if name == "custom":
            return cls._custom(raw, task)
        if isinstance(raw, Mapping):  # a Python caller may give a layer list as a tuple
            raw = {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}
        checked = distro_schema.validate(
            _params_model(name), raw, error=_param_error, prefix="params"
        )
        params: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in checked
        }
        if "classes" in params and task == "classification" and params["classes"] < 2:
            raise SpecError("params.classes", "a classifier needs 2 or more classes")
        if name == "cnn" and params["image_size"] % 4:
            raise SpecError("params.image_size", "must be divisible by 4 (two 2x2 poolings)")
        return cls(name, types.MappingProxyType(params), task)

    @classmethod
    def _custom(cls, raw: Any, task: str) -> ModelSpec:
        """``params``: ``layers`` (blocks), ``in_shape`` (ints) and ``tokens`` (bool)."""
        if not isinstance(raw, Mapping):
            raise SpecError("params", "must be a mapping")
        extra = set(raw) - {"layers", "in_shape", "tokens"}
        if extra:
            raise SpecError(f"params.{sorted(extra)[0]}", "unknown parameter")
        in_shape, tokens = raw.get("in_shape"), raw.get("tokens", False)
        if not isinstance(in_shape, list | tuple) or not 1 <= len(in_shape) <= 3 or any(
            isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 1 << 24
            for d in in_shape
        ):
            raise SpecError("params.in_shape", "must be 1 to 3 positive integers")
        if not isinstance(tokens, bool):
            raise SpecError("params.tokens", "must be true or false")
        layers = blocks.normalise(raw.get("layers"))
        cost = blocks.check(layers, tuple(in_shape), tokens)
        if len(cost.out_shape) != 1:
            raise SpecError("layers", f"the last block gives {cost.out_shape}; want one vector")
        width = cost.out_shape[0]
        if task == "regression" and width != 1:
            raise SpecError("layers", f"a regression model has 1 output, this one {width}")
        if task == "classification" and width < 2:
            raise SpecError("layers", "a classifier needs 2 or more outputs")
        params = {"layers": layers, "in_shape": list(in_shape), "tokens": tokens}
        return cls("custom", types.MappingProxyType(params), task)

    @property
    def layers(self) -> list[dict[str, Any]]:
        """The architecture as blocks (``training.blocks``): its own, or its preset's."""
        if self.name == "custom":
            return list(self.params["layers"])
        return blocks.preset(self.name, self.params)

    def cost(self) -> blocks.Cost:
        """Parameters, FLOPs and activations per sample (``training.blocks.cost``)."""
        tokens = self.input_dtype == "int64"
        shape = self.input_shape
        return blocks.check(self.layers, shape, tokens)

    def to_mapping(self) -> dict[str, Any]:
        """Return the JSON-friendly form accepted by :meth:`from_mapping`.

        ``task`` is written only for regression, so a classifier's form is unchanged.
        """
        out: dict[str, Any] = {
            "name": self.name,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
        }
        if self.task != "classification":
            out["task"] = self.task
        if self.lora is not None:
            out["lora"] = {**self.lora, "targets": list(self.lora["targets"])}
        return out

    @property
    def base(self) -> ModelSpec:
        """The same architecture without adapters."""
        return dataclasses.replace(self, lora=None)

    @property
    def label_dtype(self) -> str:
        """``"int64"`` class labels, or ``"float32"`` targets for regression."""
        return "float32" if self.task == "regression" else "int64"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample (without the batch dimension)."""
        p = self.params
        if self.name == "custom":
            return tuple(p["in_shape"])
        if self.name == "cnn":
            return (p["channels"] * p["image_size"] ** 2,)
        if self.name == "char_lstm":
            return (p["seq_len"],)
        return (p["in_features"],)

    @property
    def input_dtype(self) -> str:
        """``"float32"`` for feature models, ``"int64"`` token ids for text models."""
        if self.name == "custom":
            return "int64" if self.params["tokens"] else "float32"
        return "int64" if catalogue.MODELS[self.name].inputs == "tokens" else "float32"

    @property
    def classes(self) -> int:
        """Number of output classes (the vocabulary size for text models)."""
        if self.name == "custom":
            return self.cost().out_shape[0]
        return int(self.params["vocab_size" if self.name == "char_lstm" else "classes"])


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
