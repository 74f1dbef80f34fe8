"""The S3 server restarts in the middle of a job: transfers retry and the job completes.

The server stays down until some transfer (a trainer's fetch or upload, or the owner's
store of a model) has failed and logged its retry, so the outage is always hit; the
restart then has to land within the retry policy's patience (about 7.75 s).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from protocols.job.spec import from_mapping
from protocols.job.trainer import Trainer
from storage.embedded import EmbeddedS3
from tests.conftest import wait_until
from tests.job.test_job_inprocess import SMALL, start
from tests.s3servers import ServerHandle


async def test_s3_restart_mid_round(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="distro_train.transfer")
    caplog.set_level(logging.INFO, logger="distro_train.storage")

    def retries() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "retry" in r.getMessage()]

    server = EmbeddedS3(tmp_path / "s3")
    config = await trio.to_thread.run_sync(server.start)
    handle = ServerHandle("nanio", config, server.stop)
    try:
        async with trio.open_nursery() as nursery:
            c = await start(nursery, tmp_path, handle, [Trainer] * 3)
            spec = from_mapping({**SMALL, "trainers": 3, "rounds": 5})
            job_id = await c.owner.submit(spec)
            await wait_until(
                lambda: (c.owner.status(job_id) or {}).get("round", 0) >= 2, 60, "round 2"
            )
            await trio.to_thread.run_sync(server.stop)
            await wait_until(retries, 60, "a transfer to hit the outage")
            restarted = EmbeddedS3(tmp_path / "s3", port=int(config.endpoint.rsplit(":", 1)[1]))
            await trio.to_thread.run_sync(restarted.start)
            server = restarted
            await wait_until(
                lambda: (c.owner.status(job_id) or {}).get("state") in ("done", "failed"),
                120,
                "job end",
            )
            status = c.owner.status(job_id)
            assert status is not None and status["state"] == "done", status
            assert [r["round"] for r in status["history"]] == [1, 2, 3, 4, 5]
            nursery.cancel_scope.cancel()
    finally:
        server.stop()
