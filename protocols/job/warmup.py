"""Loading a trainer's training stack (torch) once, ahead of its first task.

Importing torch takes seconds. A trainer does it off the loop as soon as a job will
likely pick it (the owner's ``preparing`` announcement, docs/jobs.md "Warm-up"), so
the import overlaps the owner's preparation and upload instead of round 1. Not when
a job wants few of many daemons: torch costs each daemon ~250 MB.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from distro_errors import DistroError
from protocols.job import compute
from protocols.job.ports import NodeLike
from protocols.pb import distro_pb2 as pb

log = logging.getLogger("distro_train.trainer")

WARM_UP_ODDS = 4
"""torch is loaded on an announcement when the job wants >= 1/this of the live daemons."""


class WarmUp:
    """Starts the training stack's import at most once per daemon.

    Attributes:
        started: The import was started (or is not needed: a daemon without torch).
    """

    def __init__(
        self, node: NodeLike, device: str, on_device: Callable[[str], None] | None = None
    ) -> None:
        self.node, self.device, self.on_device = node, device, on_device
        self.started = False

    def for_job(self, ann: pb.JobAnnounce, nursery: trio.Nursery) -> None:
        """Start the import if ``ann``'s job will likely pick us."""
        if ann.trainers_wanted * WARM_UP_ODDS >= len(self.node.live_peers()):
            self.start(nursery)

    def start(self, nursery: trio.Nursery) -> None:
        """Start the import now unless it was started before."""
        if not self.started:
            self.started = True
            nursery.start_soon(self.run)

    async def run(self) -> None:
        """Load torch and settle the device; advertise the GPU only if tasks use it."""
        started = trio.current_time()
        try:
            gpu = await trio.to_thread.run_sync(compute.warm_up, self.device)
            log.info("trainer: training stack loaded in %.2f s", trio.current_time() - started)
        except DistroError as exc:  # cuda asked for, none here: every task will refuse
            log.error("trainer: %s", exc)
            gpu = ""
        if self.on_device is not None:
            self.on_device(gpu)
