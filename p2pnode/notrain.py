"""A daemon installed without the ``train`` or ``owner`` extra: it says what it cannot do.

:func:`can_train` asks whether torch can be imported. When it cannot, the runner
installs :class:`NoTrainTrainer` instead of the trainer: it never offers for a job
(an announcement is counted as dropped ``cannot_train``, never imported against),
refuses any assignment with the reason code ``cannot_train``, and its status says
``can_train: false``; the node's presence says ``accepting: false``, so owners do not
select it. Without this, the first announcement would import torch and fail.

Without the ``owner`` extra (:func:`missing_for_owner`), ``jobs.submit`` answers
:data:`CANNOT_OWN` naming the missing modules instead of accepting a job that could
only fail.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Callable
from typing import Any

from libp2p.peer.id import ID

from p2pnode.rpc import Handler, RpcError
from protocols.envelope import Opened
from protocols.job import codec
from protocols.job.trainer import Trainer
from protocols.pb import distro_pb2 as pb

log = logging.getLogger("distro_train.trainer")
REASON = "cannot_train"
INSTALL_HINT = "pip install 'distro-train[train]'"


OWNER_HINT = "pip install 'distro-train[owner]'"
OWNER_MODULES = ("torch", "safetensors", "numpy", "boto3")
"""What owning a job imports (validation, aggregation, storage), from the ``owner`` extra."""
CANNOT_OWN = -32002
"""JSON-RPC application error: this daemon lacks what owning a job needs."""


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def can_train() -> bool:
    """Whether torch is importable (found on the path; not imported)."""
    return _importable("torch")


def missing_for_owner() -> list[str]:
    """The modules owning a job needs that are not installed."""
    return [name for name in OWNER_MODULES if not _importable(name)]


def refuse_jobs_without(missing: list[str]) -> Callable[[Handler], Handler]:
    """A ``jobs.submit`` wrapper that refuses every job, naming what is missing."""

    def wrapper(_handler: Handler) -> Handler:
        async def submit(params: dict[str, Any]) -> Any:
            raise RpcError(CANNOT_OWN, f"this daemon cannot own jobs: {', '.join(missing)} "
                           f"not installed ({OWNER_HINT})")

        return submit

    return wrapper


class NoTrainTrainer(Trainer):
    """The trainer role of a daemon without torch: refuses every job, never crashes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warm.started = True  # nothing to import
        sampler = getattr(self.node, "sampler", None)
        if sampler is not None:
            sampler.min_health_to_work = math.inf  # presence: accepting = false

    async def _on_announce(self, data: bytes, from_peer: ID) -> None:
        if not self.dropped.get(REASON):
            log.warning("job announced, but this daemon cannot train (torch not installed; "
                        "%s); refusing every job", INSTALL_HINT)
        self.dropped[REASON] = self.dropped.get(REASON, 0) + 1

    async def handle_assign(self, msg: Opened) -> pb.Ack:
        """Refuse: no torch."""
        self.tasks[REASON] += 1
        return codec.ack(False, REASON)

    def status(self) -> dict[str, Any]:
        """The trainer's status plus ``can_train: false``."""
        return {**super().status(), "can_train": False}
