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

import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import torch
from pydantic import BaseModel, Field
from torch import nn

import distro_schema
from training import catalogue
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
    """

    name: str
    params: Mapping[str, Any]
    task: str = "classification"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ModelSpec:
        """Validate an untrusted ``{"name": ..., "params": {...}}`` mapping.

        Raises:
            SpecError: Unknown name, unknown parameter, wrong type or out-of-range value,
                or inconsistent values (e.g. CNN ``image_size`` not divisible by 4).
        """
        if not isinstance(data, Mapping):
            raise SpecError("spec", "must be a mapping")
        extra = set(data) - {"name", "params", "task"}
        if extra:
            raise SpecError(str(sorted(extra)[0]), "unknown spec field")
        name = data.get("name")
        if not isinstance(name, str) or name not in catalogue.MODELS:
            raise SpecError("name", f"unknown model {name!r}; known: {sorted(catalogue.MODELS)}")
        task = data.get("task", "classification")
        if task not in catalogue.TRAIN_TASKS:
            raise SpecError("task", f"choose from {', '.join(catalogue.TRAIN_TASKS)}")
        raw = data.get("params", {})
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
        return out

    @property
    def label_dtype(self) -> str:
        """``"int64"`` class labels, or ``"float32"`` targets for regression."""
        return "float32" if self.task == "regression" else "int64"

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
        return "int64" if catalogue.MODELS[self.name].inputs == "tokens" else "float32"

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
