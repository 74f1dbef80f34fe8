"""Compressed updates and model deltas in a whole job, in-process (issue 17).

Owner and trainers over tests/job/memnet.py with the production owner, trainer,
storage and training code: a job that compresses its updates (int8, error-fed),
with every slot trained twice, completes and learns; every replica pair agrees on
the sketch of its true delta although each trainer carries its own residual; from
round 2 on the trainers rebuild the global model from a delta. A trainer whose
compressed update is malformed is refused (``bad_compression``) and the job goes on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import trio
from safetensors.torch import load, save

from protocols.job import jobdata
from protocols.job.spec import from_mapping
from protocols.job.trainer import Trainer
from tests.job.test_job_inprocess import SMALL, run_job, start
from tests.s3servers import ServerHandle


class BadScales(Trainer):
    """Trains honestly, then uploads its int8 update with every scale negated."""

    async def upload_and_announce(self, job_id: str, round: int, job: Any, task: Any,
                                  result: Any, client: Any) -> Any:
        parts = {k: -v if k.startswith("s/") else v for k, v in load(result.weights).items()}
        result = dataclasses.replace(result, weights=bytes(save(parts)))
        return await super().upload_and_announce(job_id, round, job, task, result, client)


async def test_compressed_job_with_replicas_completes_and_sends_less(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [Trainer] * 4, spot_check_rate=0.0)
        status = await run_job(
            c, trainers=2, spares=2, redundancy=1.0, rounds=3, compression="int8"
        )
        assert status["state"] == "done", status
        history = status["history"]
        for rec in history:
            assert len(rec["verified_updates"]) == 4, rec  # both replicas of both slots
            assert not rec["rejected_updates"], rec
        assert history[-1]["test_accuracy"] > 0.8, history
        # An int8 update is a quarter of the plain weights, plus scales, sketch, header.
        plain = len(jobdata.prepare(from_mapping({**SMALL, "trainers": 2})).initial)
        sent = [t.bytes_out / t.tasks["done"] for t in c.trainers if t.tasks["done"]]
        assert sent and max(sent) < 0.6 * plain, (sent, plain)
        # Rounds 2 and 3 reach each trainer as a delta of the model it trained from.
        assert sum(t.model_deltas for t in c.trainers) >= 4
        nursery.cancel_scope.cancel()


async def test_a_malformed_compressed_update_is_refused_and_the_job_goes_on(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [Trainer, Trainer, BadScales])
        status = await run_job(c, trainers=3, quorum=2, rounds=1, compression="int8")
        assert status["state"] == "done", status
        assert c.owner.stats.updates["rejected", "bad_compression"] == 1, c.owner.stats.updates
        assert status["history"][0]["accepted"] == 2, status["history"]
        nursery.cancel_scope.cancel()
