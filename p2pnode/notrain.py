"""A daemon installed without the ``train`` extra (no torch): it cannot train, and says so.

:func:`can_train` asks whether torch can be imported. When it cannot, the runner
installs :class:`NoTrainTrainer` instead of the trainer: it never offers for a job
(an announcement is counted as dropped ``cannot_train``, never imported against),
refuses any assignment with the reason code ``cannot_train``, and its status says
``can_train: false``; the node's presence says ``accepting: false``, so owners do not
select it. Without this, the first announcement would import torch and fail.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import Any

from libp2p.peer.id import ID

from protocols.envelope import Opened
from protocols.job import codec
from protocols.job.trainer import Trainer
from protocols.pb import distro_pb2 as pb

log = logging.getLogger("distro_train.trainer")
REASON = "cannot_train"
INSTALL_HINT = "pip install 'distro-train[train]'"


def can_train() -> bool:
    """Whether torch is importable (found on the path; not imported)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


class NoTrainTrainer(Trainer):
    """The trainer role of a daemon without torch: refuses every job, never crashes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._warm = True  # nothing to import
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
