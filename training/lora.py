"""LoRA updates: what a trainer uploads (adapters only), and what the owner does with it.

A LoRA job's global model holds the frozen base tensors and the adapters
(``<name>.lora_a``, ``<name>.lora_b``, see ``training.models``). A trainer's update is
only the adapters (:func:`adapters_only`); the owner checks it against the adapter
layout and puts it back into the global model (:func:`expand`), so validation and
every aggregation rule (FedAvg and the robust ones) work on whole models whose frozen
part is the same in every update. :func:`merge` exports the result as plain base
weights: ``W + alpha / rank * B A``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from training import models, weights
from training.errors import WeightsError


def adapters_only(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter tensors of a state dict."""
    return {k: v for k, v in state.items() if models.is_adapter(k)}


def expand(global_weights: bytes, update: bytes, spec: models.ModelSpec) -> bytes:
    """The whole model an adapters-only ``update`` makes of ``global_weights``.

    Raises:
        WeightsError: ``update`` is not exactly the adapters of ``spec`` (``names``,
            ``shape``, ``dtype``), or is not safetensors.
    """
    layout = [(n, s, d) for n, s, d in weights.layout(spec) if models.is_adapter(n)]
    if not layout:
        raise WeightsError("names", "the model has no adapters")
    got = weights.decode_layout(update, layout)
    full = weights.decode(global_weights, spec)
    full.update(got)
    return weights.encode(full)


def merge(state: Mapping[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """Base weights with every adapter folded in (``W + alpha / rank * B A``).

    Only names are read (``X.lora_a`` and ``X.lora_b`` fold into ``X.weight``), so no
    architecture is needed; a state without adapters comes back unchanged.
    """
    scale = alpha / rank
    out = {k: v.clone() for k, v in state.items() if not models.is_adapter(k)}
    for name in state:
        if name.endswith(".lora_a"):
            stem = name.removesuffix(".lora_a")
            a, b = state[name], state[f"{stem}.lora_b"]
            out[f"{stem}.weight"] = out[f"{stem}.weight"] + scale * (b @ a)
    return out


def merge_bytes(model: bytes, rank: int, alpha: float) -> bytes:
    """:func:`merge` on safetensors bytes (the owner's final LoRA model); blocking.

    Raises:
        ValueError: ``model`` is not safetensors, or an adapter does not fit its base.
    """
    from safetensors.torch import load

    try:
        return weights.encode(merge(load(model), rank, alpha))
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"cannot merge the adapters: {exc}") from None
