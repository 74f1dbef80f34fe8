"""Model specs: a validated architecture, torch-free (built by ``training.models``).

A job never ships code. It names a model of ``training.catalogue.MODELS`` (which
declares every model's hyper-parameters, defaults and bounds) plus hyper-parameters,
or ``custom`` blocks (``training.blocks``); :meth:`ModelSpec.from_mapping` validates
them (unknown name, unknown or out-of-range parameter ->
:class:`~training.errors.SpecError`). Kept apart from the torch modules so that the
owner's submit check and the trainer's budget read a spec without importing torch.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, Field

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


def check_params(name: str, raw: Any, prefix: str = "params") -> dict[str, Any]:
    """Catalogue model ``name``'s hyper-parameters from ``raw``, defaults filled in.

    The job spec calls it when a job is submitted (``prefix`` ``model_params``), so a
    bad parameter is refused then, not when the data is prepared.

    Raises:
        SpecError: an unknown parameter, or one of the wrong type or out of range
            (``<prefix>.<name>``).
    """
    if isinstance(raw, Mapping):  # a Python caller may give a layer list as a tuple
        raw = {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}
    checked = distro_schema.validate(_params_model(name), raw, error=_param_error, prefix=prefix)
    params: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in checked}
    if name == "cnn" and params["image_size"] % 4:
        raise SpecError(f"{prefix}.image_size", "must be divisible by 4 (two 2x2 poolings)")
    return params


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
        params = check_params(name, raw)
        if "classes" in params and task == "classification" and params["classes"] < 2:
            raise SpecError("params.classes", "a classifier needs 2 or more classes")
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
