"""The model catalogue: architectures declared by name and hyper-parameters.

A job never ships code. It names an entry of :data:`CATALOGUE` plus hyper-parameters;
:meth:`ModelSpec.from_mapping` validates them (unknown name, unknown or out-of-range
parameter -> :class:`~training.errors.SpecError`) and :func:`build` makes the module.

Every image model takes flat float32 inputs of ``in_features`` values (an 8x8 digits
image is 64 features, an MNIST image 784); the CNN reshapes them to
``channels x image_size x image_size`` itself, so every image dataset travels in one
format. The text model takes int64 token windows of ``seq_len`` and predicts the next
token.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from training.errors import SpecError


@dataclass(frozen=True)
class _Param:
    kind: type  # int or tuple (tuple means a list of positive ints)
    default: Any
    low: int = 1
    high: int = 1 << 20


@dataclass(frozen=True)
class Architecture:
    """One catalogue entry.

    Attributes:
        name: Catalogue name.
        description: One line for docs and CLI listings.
        params: Hyper-parameter schema with defaults.
    """

    name: str
    description: str
    params: Mapping[str, _Param]


def _arch(name: str, description: str, **params: _Param) -> Architecture:
    return Architecture(name, description, types.MappingProxyType(params))


CATALOGUE: Mapping[str, Architecture] = types.MappingProxyType(
    {
        "logreg": _arch(
            "logreg",
            "multinomial logistic regression on flat features",
            in_features=_Param(int, 784),
            classes=_Param(int, 10, low=2, high=100_000),
        ),
        "mlp": _arch(
            "mlp",
            "ReLU MLP; default is McMahan's 2NN 784-200-200-10",
            in_features=_Param(int, 784),
            hidden=_Param(tuple, (200, 200)),
            classes=_Param(int, 10, low=2, high=100_000),
        ),
        "cnn": _arch(
            "cnn",
            "McMahan's MNIST CNN: 5x5 conv 32, pool, 5x5 conv 64, pool, dense 512",
            image_size=_Param(int, 28, low=4, high=1024),
            channels=_Param(int, 1, low=1, high=16),
            conv1=_Param(int, 32, high=4096),
            conv2=_Param(int, 64, high=4096),
            dense=_Param(int, 512, high=65_536),
            classes=_Param(int, 10, low=2, high=100_000),
        ),
        "char_lstm": _arch(
            "char_lstm",
            "character LSTM: embedding, LSTM, linear head predicting the next token",
            vocab_size=_Param(int, 28, low=2, high=65_536),
            seq_len=_Param(int, 32, high=4096),
            embed_dim=_Param(int, 16, high=4096),
            hidden_size=_Param(int, 64, high=8192),
            num_layers=_Param(int, 1, high=8),
        ),
    }
)

_MAX_HIDDEN_LAYERS = 16


def _check_value(field: str, schema: _Param, value: Any) -> Any:
    if schema.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(field, f"must be an integer, got {type(value).__name__}")
        if not schema.low <= value <= schema.high:
            raise SpecError(field, f"must be in [{schema.low}, {schema.high}], got {value}")
        return value
    if not isinstance(value, list | tuple) or not value or len(value) > _MAX_HIDDEN_LAYERS:
        raise SpecError(field, f"must be a list of 1 to {_MAX_HIDDEN_LAYERS} positive integers")
    for item in value:
        _check_value(field, _Param(int, 1, 1, 1 << 16), item)
    return tuple(value)


@dataclass(frozen=True)
class ModelSpec:
    """A validated architecture name plus its full hyper-parameters (defaults filled in).

    Build one with :meth:`from_mapping`; the constructor trusts its arguments.

    Attributes:
        name: Catalogue name.
        params: Every hyper-parameter of the architecture, read-only.
    """

    name: str
    params: Mapping[str, Any]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Validate an untrusted ``{"name": ..., "params": {...}}`` mapping.

        Raises:
            SpecError: Unknown name, unknown parameter, wrong type or out-of-range value,
                or inconsistent values (e.g. CNN ``image_size`` not divisible by 4).
        """
        if not isinstance(data, Mapping):
            raise SpecError("spec", "must be a mapping")
        extra = set(data) - {"name", "params"}
        if extra:
            raise SpecError(str(sorted(extra)[0]), "unknown spec field")
        name = data.get("name")
        if not isinstance(name, str) or name not in CATALOGUE:
            raise SpecError("name", f"unknown model {name!r}; known: {sorted(CATALOGUE)}")
        raw = data.get("params", {})
        if not isinstance(raw, Mapping):
            raise SpecError("params", "must be a mapping")
        schema = CATALOGUE[name].params
        params: dict[str, Any] = {}
        for key in raw:
            if key not in schema:
                raise SpecError(f"params.{key}", f"unknown parameter for {name}")
        for key, entry in schema.items():
            params[key] = _check_value(f"params.{key}", entry, raw.get(key, entry.default))
        if name == "cnn" and params["image_size"] % 4:
            raise SpecError("params.image_size", "must be divisible by 4 (two 2x2 poolings)")
        return cls(name, types.MappingProxyType(params))

    def to_mapping(self) -> dict[str, Any]:
        """Return the JSON-friendly form accepted by :meth:`from_mapping`."""
        return {
            "name": self.name,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
        }

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample (without the batch dimension)."""
        p = self.params
        if self.name == "cnn":
            return (p["channels"] * p["image_size"] ** 2,)
        if self.name == "char_lstm":
            return (p["seq_len"],)
        return (p["in_features"],)

    @property
    def input_dtype(self) -> str:
        """``"float32"`` for feature models, ``"int64"`` token ids for text models."""
        return "int64" if self.name == "char_lstm" else "float32"

    @property
    def classes(self) -> int:
        """Number of output classes (the vocabulary size for text models)."""
        return int(self.params["vocab_size" if self.name == "char_lstm" else "classes"])


class _CNN(nn.Module):
    def __init__(self, p: Mapping[str, Any]) -> None:
        super().__init__()
        self.shape = (p["channels"], p["image_size"], p["image_size"])
        self.conv1 = nn.Conv2d(p["channels"], p["conv1"], 5, padding=2)
        self.conv2 = nn.Conv2d(p["conv1"], p["conv2"], 5, padding=2)
        self.fc1 = nn.Linear(p["conv2"] * (p["image_size"] // 4) ** 2, p["dense"])
        self.fc2 = nn.Linear(p["dense"], p["classes"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, *self.shape)
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))  # type: ignore[no-any-return]


class _CharLSTM(nn.Module):
    def __init__(self, p: Mapping[str, Any]) -> None:
        super().__init__()
        self.embed = nn.Embedding(p["vocab_size"], p["embed_dim"])
        self.lstm = nn.LSTM(p["embed_dim"], p["hidden_size"], p["num_layers"], batch_first=True)
        self.head = nn.Linear(p["hidden_size"], p["vocab_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(x))
        return self.head(out[:, -1])  # type: ignore[no-any-return]


def _mlp(p: Mapping[str, Any]) -> nn.Module:
    layers: list[nn.Module] = []
    width = p["in_features"]
    for size in p["hidden"]:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, p["classes"]))
    return nn.Sequential(*layers)


_BUILDERS: Mapping[str, Callable[[Mapping[str, Any]], nn.Module]] = {
    "logreg": lambda p: nn.Sequential(nn.Linear(p["in_features"], p["classes"])),
    "mlp": _mlp,
    "cnn": _CNN,
    "char_lstm": _CharLSTM,
}


def build(spec: ModelSpec) -> nn.Module:
    """Make a freshly initialised module for ``spec`` (uses torch's global RNG).

    Raises:
        SpecError: ``spec.name`` is not in the catalogue.
    """
    if spec.name not in _BUILDERS:
        raise SpecError("name", f"unknown model {spec.name!r}")
    return _BUILDERS[spec.name](spec.params)


def parameter_count(spec: ModelSpec) -> int:
    """Number of trainable parameters of ``spec``'s architecture."""
    return sum(p.numel() for p in build(spec).parameters())
