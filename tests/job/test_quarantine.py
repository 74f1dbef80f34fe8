"""Quarantine of newcomers (issue 13, docs/verification.md), in-process.

Owner and trainers over tests/job/memnet.py with the production owner, trainer,
storage and training code. Four honest trainers earn a verified contribution in a
first job (every slot redundant: replicas agree). Then four fresh Sybils join a
second job, each sending its honest update plus a shared push. The owner neither
re-runs nor replicates anything in that job, so only quarantine stands between the
Sybils and the average: their updates must be validated and kept, with no weight.
In another job every slot is trained by two Sybils of one swarm: replicas that
agree with each other must not verify newcomers (without that rule this fails).
"""

from __future__ import annotations

from pathlib import Path

import trio

from p2pnode.jobstore import JobStore
from protocols.job import PROTOCOL_ID
from protocols.job.owner import Owner, OwnerConfig
from protocols.job.service import request_handler
from protocols.job.trainer import Trainer
from storage.s3 import S3Store
from tests.conftest import wait_until
from tests.job.adversaries import QuietSybil, Sybil
from tests.job.memnet import MemNet
from tests.job.test_job_inprocess import LOOPBACK_TRAINER, Cluster, run_job, start
from tests.s3servers import ServerHandle


async def test_quarantined_sybils_do_not_move_the_global_model(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    cfg = OwnerConfig(announce_interval_s=0.2, tick_s=0.05, spot_check_rate=0.0,
                      probation_checks=0)
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        owner_node = net.add()
        owner = Owner(owner_node, JobStore(tmp_path / "jobs.sqlite3"),
                      lambda: S3Store(nanio_server.config), cfg)
        owner_node.set_stream_handler(
            PROTOCOL_ID, request_handler(owner_node.private_key, owner, Trainer(owner_node))
        )
        await nursery.start(owner.run)

        async def join(kind: type[Trainer]) -> Trainer:
            node = net.add()
            t = kind(node, LOOPBACK_TRAINER)
            node.set_stream_handler(PROTOCOL_ID, request_handler(node.private_key, owner, t))
            await nursery.start(t.run)
            return t

        honest = [await join(Trainer) for _ in range(4)]
        c = Cluster(owner, owner_node, honest)
        first = await run_job(c, trainers=2, spares=2, redundancy=1.0, rounds=1)
        assert first["state"] == "done", first
        ids = {t.node.peer_id.to_base58() for t in honest}
        assert len(first["history"][0]["verified_updates"]) == 4, first["history"]

        sybils = [await join(Sybil) for _ in range(4)]
        sybil_ids = {t.node.peer_id.to_base58() for t in sybils}
        c = Cluster(owner, owner_node, honest + sybils)
        seen: dict[str, str] = {}

        async def watch() -> None:
            while True:
                for job_id in list(owner.live):
                    seen.update((owner.status(job_id) or {}).get("quarantined", {}))
                await trio.sleep(0.05)

        nursery.start_soon(watch)
        second = await run_job(c, trainers=8, rounds=2)
        assert second["state"] == "done", second
        await wait_until(lambda: sybil_ids <= set(seen), 5, "status shows the quarantine")
        assert not ids & set(seen), seen  # the verified trainers are out of quarantine
        for rec in second["history"]:
            assert set(rec["trainers"]) == ids, rec  # only the honest are averaged
            assert len(rec["quarantined_updates"]) == 4, rec  # kept, with no weight
        # It still learns, from half the data (the Sybils' slots carry no weight).
        assert second["history"][-1]["test_accuracy"] > 0.7, second["history"]
        nursery.cancel_scope.cancel()


async def test_sybil_replicas_do_not_vouch_for_each_other(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    # Every slot trained twice, both times by a fresh identity of one swarm: their
    # updates are the same bytes, so replicas alone would agree and verify them.
    # No spot checks and no probation: only the rule that a newcomer's comparison
    # is judged by the owner's re-run keeps them out.
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [QuietSybil] * 4,
                        spot_check_rate=0.0, probation_checks=0)
        status = await run_job(c, trainers=2, spares=2, redundancy=1.0, rounds=1)
        sybil_ids = {t.node.peer_id.to_base58() for t in c.trainers}
        history = status["history"]
        updates = [u for rec in history for u in rec["updates"]]
        assert {u["peer"] for u in updates} == sybil_ids, status  # all four trained
        for rec in history:
            assert not rec["verified_updates"] and not rec["trainers"], rec
        assert all(u["reason"] in ("quarantined", "cheated") for u in updates), updates
        nursery.cancel_scope.cancel()
