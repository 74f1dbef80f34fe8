"""Owner and trainers over an in-process network, with a real S3 server and real training."""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.jobstore import JobStore
from protocols.job import PROTOCOL_ID
from protocols.job.owner import Owner, OwnerConfig
from protocols.job.service import request_handler
from protocols.job.spec import from_mapping
from protocols.job.trainer import Trainer
from storage.s3 import S3Store
from tests.job.memnet import MemNet
from tests.s3servers import ServerHandle


async def wait_until(predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.05)


async def test_digits_job_completes_and_learns(tmp_path: Path, nanio_server: ServerHandle) -> None:
    spec = from_mapping({
        "model": "logreg", "dataset": "digits", "trainers": 3, "rounds": 3, "epochs": 2,
        "lr": 0.1, "batch_size": 16, "partition": "iid", "round_deadline_s": 60.0,
        "chunk_samples": 200,
    })
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        owner_node = net.add()
        jobs = JobStore(tmp_path / "jobs.sqlite3")
        owner = Owner(owner_node, jobs, lambda: S3Store(nanio_server.config),
                      OwnerConfig(announce_interval_s=0.2, tick_s=0.05))
        trainer_for_owner = Trainer(owner_node)
        owner_node.set_stream_handler(PROTOCOL_ID, request_handler(owner_node.private_key, owner, trainer_for_owner))
        await nursery.start(owner.run)
        trainers = []
        for _ in range(3):
            node = net.add()
            t = Trainer(node)
            node.set_stream_handler(PROTOCOL_ID, request_handler(node.private_key, owner, t))
            await nursery.start(t.run)
            trainers.append(t)
        job_id = await owner.submit(spec)
        await wait_until(lambda: (owner.status(job_id) or {}).get("state") in ("done", "failed"), 120)
        status = owner.status(job_id)
        assert status is not None
        assert status["state"] == "done", status
        history = status["history"]
        assert [r["round"] for r in history] == [1, 2, 3]
        assert history[-1]["test_accuracy"] > 0.85
        assert all(r["accepted"] == 3 for r in history)
        nursery.cancel_scope.cancel()
