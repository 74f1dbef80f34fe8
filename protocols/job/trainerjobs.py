"""The jobs a trainer knows: one entry per announced job, in a bounded table."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import trio
from libp2p.crypto.keys import PublicKey
from libp2p.peer.id import ID

from protocols.envelope import Opened
from protocols.job import codec
from protocols.job.jobmemory import JobMemory
from protocols.pb import distro_pb2 as pb

IDLE_STATES = ("offered", "declined", "cancelled")
"""Jobs in these states may be forgotten to make room for newly announced ones."""


@dataclass
class KnownJob:
    """What a trainer keeps about one announced job.

    ``state``: ``offered``, ``declined``, ``selected-pending``, ``training``,
    ``announced``, ``failed-task`` or ``cancelled``. ``running``: the cancel scopes
    of its tasks under way.
    """

    owner: ID
    owner_key: PublicKey
    announce: pb.JobAnnounce
    state: str = "offered"
    offered_at: float = 0.0
    checked: bool = False
    rounds_done: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)
    nonce: bytes = b""  # the current task's (docs/verification.md)
    deterministic: bool = False
    running: set[trio.CancelScope] = field(default_factory=set)


def remember(
    jobs: OrderedDict[str, KnownJob],
    job_id: str,
    job: KnownJob,
    known_jobs: int,
    jobs_per_owner: int,
) -> bool:
    """Add ``job`` to the bounded table ``jobs``; False when it has no room.

    A job id belongs to the key that first announced it (another sender's
    announcement of it is ignored). When the table is full, the oldest job we
    merely offered for or were declined by is forgotten; a job we were
    selected for or are training is never evicted by announcements, and one
    owner holds at most ``jobs_per_owner`` entries.
    """
    mine = sum(1 for k in jobs.values() if k.owner == job.owner)
    if mine >= jobs_per_owner:
        return False
    if len(jobs) >= known_jobs:
        idle = next((j for j, k in jobs.items() if k.state in IDLE_STATES), None)
        if idle is None:
            return False
        del jobs[idle]
    jobs[job_id] = job
    return True



def cancel_job(jobs: OrderedDict[str, KnownJob], memory: JobMemory, msg: Opened) -> pb.Ack:
    """The owner of ``msg.job_id`` cancelled it: stop its tasks, forget what we keep.

    Only the job's owner can: anyone else is answered ``unknown_job`` and nothing
    changes. A running task's scope is cancelled (its training thread stops at the
    next batch), the job's residual and base model are dropped from ``memory``, and
    further assignments of the job are refused; the entry stays, marked
    ``cancelled``, for ``trainer.status``, until room is needed.
    """
    job = jobs.get(msg.job_id)
    if job is None or job.owner != msg.sender:
        return codec.ack(False, "unknown_job")
    job.state = "cancelled"
    for scope in job.running:
        scope.cancel()
    memory.drop(msg.job_id)
    return codec.ack(True)
