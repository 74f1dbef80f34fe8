"""The server's state between rounds and the FedOpt step that uses it (pure, no I/O).

:class:`ServerState` counts the rounds aggregated (every rule: the noise seed takes the
round) and holds the FedOpt moments (Reddi et al. 2021); it is saved with the owner's
job state as safetensors bytes (:meth:`ServerState.encode`). :func:`server_step` is the
Adam / Yogi / Adagrad step that :func:`training.aggregate.aggregate` takes for the
FedOpt rules.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from training.catalogue import RULES
from training.errors import AggregationError
from training.tensorfile import TensorFileError, read_header

StateDict = dict[str, torch.Tensor]


@dataclass
class ServerState:
    """Server optimiser state carried between rounds.

    Attributes:
        rule: The rule the state belongs to.
        round: Rounds aggregated so far.
        m: FedOpt first moment (flat float32) or None.
        v: FedOpt second moment (flat float32) or None.
    """

    rule: str
    round: int = 0
    m: torch.Tensor | None = field(default=None, repr=False)
    v: torch.Tensor | None = field(default=None, repr=False)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The state as a tensor dict (the rule travels in :meth:`encode`'s metadata)."""
        out = {"round": torch.tensor([self.round], dtype=torch.int64)}
        if self.m is not None and self.v is not None:
            out |= {"m": self.m.contiguous(), "v": self.v.contiguous()}
        return out

    @classmethod
    def from_tensors(cls, rule: str, tensors: Mapping[str, torch.Tensor]) -> ServerState:
        """Inverse of :meth:`to_tensors`.

        Raises:
            AggregationError: reason ``state`` for an unknown rule or inconsistent tensors.
        """
        rnd, m, v = tensors.get("round"), tensors.get("m"), tensors.get("v")
        if rule not in RULES or rnd is None or rnd.shape != (1,):
            raise AggregationError("state", detail="unknown rule or missing round")
        if (m is None) != (v is None) or (m is not None and v is not None and m.shape != v.shape):
            raise AggregationError("state", detail="m and v must come together")
        if m is not None and (m.dim() != 1 or m.dtype != torch.float32):
            raise AggregationError("state", detail="moments must be flat float32")
        return cls(rule, int(rnd[0]), m, v)

    def encode(self) -> bytes:
        """Safetensors bytes, for the owner's durable job state."""
        return bytes(_st_save(self.to_tensors(), metadata={"rule": self.rule}))

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = 1 << 32) -> ServerState:
        """Parse :meth:`encode` output.

        Raises:
            AggregationError: reason ``state`` for anything malformed.
        """
        try:
            read_header(data, max_bytes=max_bytes)
            tensors = _st_load(bytes(data))
        except TensorFileError as exc:
            raise AggregationError("state", detail=exc.detail) from None
        except Exception as exc:  # noqa: BLE001 - the library's error types are not public
            raise AggregationError("state", detail=str(exc)) from None
        (hlen,) = struct.unpack("<Q", bytes(data[:8]))
        meta = json.loads(bytes(data[8 : 8 + hlen])).get("__metadata__") or {}
        rule = meta.get("rule") if isinstance(meta, dict) else None
        return cls.from_tensors(str(rule), tensors)


def server_step(
    g: Mapping[str, torch.Tensor], avg: StateDict, state: ServerState, rule: str, *,
    lr: float, beta1: float, beta2: float, tau: float,
) -> StateDict:
    """One FedOpt server step from the global ``g`` towards the round's average ``avg``.

    The average's delta is the pseudo-gradient of an Adam, Yogi or Adagrad step (by
    ``rule``: ``fedadam``, ``fedyogi``, ``fedadagrad``) of size ``lr``, with the
    decays ``beta1`` and ``beta2`` and the adaptivity ``tau`` (``RuleConfig``'s
    ``server_lr``, ``beta1``, ``beta2``, ``tau``). It updates ``state``'s moments and
    returns the new global weights.
    """
    gf = torch.cat([t.view(-1) for t in g.values()])
    delta = torch.cat([t.reshape(-1) for t in avg.values()]).sub_(gf)
    m = torch.zeros_like(gf) if state.m is None else state.m.clone()
    v = torch.zeros_like(gf) if state.v is None else state.v.clone()
    m.mul_(beta1).add_(delta, alpha=1 - beta1)
    d2 = delta.square_()
    if rule == "fedadagrad":
        v.add_(d2)
    elif rule == "fedadam":
        v.mul_(beta2).add_(d2, alpha=1 - beta2)
    else:
        v.sub_(torch.sign(v - d2).mul_(d2), alpha=1 - beta2)
    state.m, state.v = m, v
    gf.addcdiv_(m, v.sqrt().add_(tau), value=lr)
    sizes = [t.numel() for t in g.values()]
    return {k: p.view(t.shape) for (k, t), p in zip(g.items(), torch.split(gf, sizes), strict=True)}
