"""A cancelled job stops at its trainers (protocols/job/trainerjobs.py ``cancel_job``).

The owner sends each trainer of the job's pool a signed ``job.cancel`` request when
the job ends cancelled; a trainer stops the task it is training, forgets the job's
residual and base model and refuses further assignments of it. Over the in-process
network (tests/job/memnet.py) with real storage and training; the second test checks
that only the job's owner can cancel it.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from types import SimpleNamespace

import trio
from libp2p.peer.id import ID

from protocols.job.jobmemory import BASE, JobMemory
from protocols.job.spec import from_mapping
from protocols.job.trainer import Trainer
from protocols.job.trainerjobs import KnownJob, cancel_job
from protocols.pb import distro_pb2 as pb
from tests.conftest import wait_until
from tests.job.test_job_inprocess import SMALL, start
from tests.s3servers import ServerHandle

# Long enough tasks that the cancel lands mid-training (a digits MLP, 100 epochs of 8).
LONG = {**SMALL, "model": "mlp", "epochs": 100, "batch_size": 8, "rounds": 5,
        "round_deadline_s": 300.0}


async def test_cancel_stops_the_trainers_task_at_once(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [Trainer] * 2)
        job_id = await c.owner.submit(from_mapping({**LONG, "trainers": 2}))

        def training() -> bool:
            return any(t.busy and t.jobs.get(job_id, None) is not None
                       and t.jobs[job_id].state == "training" for t in c.trainers)

        await wait_until(training, 120, "a trainer training the job")
        assert await c.owner.cancel(job_id)
        with trio.fail_after(60):  # a task is 10 s and more; the cancel is at once
            await wait_until(lambda: all(t.busy == 0 for t in c.trainers), 60, "tasks stopped")
        states = {t.jobs[job_id].state for t in c.trainers if job_id in t.jobs}
        assert states == {"cancelled"}, states
        assert all(t.memory.get(job_id, BASE) is None for t in c.trainers)
        assert all(t.tasks["deadline"] == 0 for t in c.trainers)
        nursery.cancel_scope.cancel()


async def test_only_the_jobs_owner_can_cancel_it() -> None:
    owner, stranger = ID(b"owner"), ID(b"stranger")
    jobs = OrderedDict({"j1": KnownJob(owner, None, pb.JobAnnounce(), state="training")})
    memory = JobMemory(1 << 20)
    memory.put("j1", BASE, b"model", tag="sha")
    scope = trio.CancelScope()
    jobs["j1"].running.add(scope)
    refused = cancel_job(jobs, memory, SimpleNamespace(job_id="j1", sender=stranger))  # type: ignore[arg-type]
    assert not refused.ok and refused.reason == "unknown_job"
    assert jobs["j1"].state == "training" and not scope.cancel_called
    assert memory.get("j1", BASE) == b"model"
    unknown = cancel_job(jobs, memory, SimpleNamespace(job_id="j2", sender=owner))  # type: ignore[arg-type]
    assert not unknown.ok
    done = cancel_job(jobs, memory, SimpleNamespace(job_id="j1", sender=owner))  # type: ignore[arg-type]
    assert done.ok and jobs["j1"].state == "cancelled" and scope.cancel_called
    assert memory.get("j1", BASE) is None
