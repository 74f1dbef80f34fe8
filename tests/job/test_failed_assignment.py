"""A failed assignment takes a trainer out of a round, not out of the job
(protocols/job/owner/round.py ``forgive_heard``).

A trainer whose assignment failed but whose presence arrives afterwards is offered a
slot again next round; one that died stays listed by presence until its silence
times out, is never heard again, and is not offered another. Over the in-process
network (tests/job/memnet.py) with real storage and training.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from protocols.envelope import Opened
from protocols.job.owner.config import LiveJob
from protocols.job.owner.round import forgive_heard
from protocols.job.records import TrainerState
from protocols.job.spec import from_mapping
from protocols.job.trainer import Trainer
from tests.job.test_job_inprocess import SMALL, run_job, start
from tests.s3servers import ServerHandle


class ResetOnce(Trainer):
    """Its first assignment's stream is reset (a dropped connection); later ones work."""

    reset = False

    async def handle_assign(self, msg: Opened) -> object:  # type: ignore[override]
        if not self.reset:
            self.reset = True
            raise ConnectionResetError("stream reset")
        return await super().handle_assign(msg)


class DiesAtRoundTwo(Trainer):
    """Trains round 1, then dies as round 2 is assigned (presence still lists it)."""

    assigns = 0

    async def handle_assign(self, msg: Opened) -> object:  # type: ignore[override]
        self.assigns += 1
        if msg.round >= 2:
            self.node.silent_since = time.monotonic()  # type: ignore[attr-defined]
            raise ConnectionResetError("daemon killed")
        return await super().handle_assign(msg)


async def test_a_trainer_whose_stream_was_reset_is_assigned_again(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [ResetOnce, Trainer, Trainer])
        c.trainers[0].node.health_score = 99.0  # type: ignore[attr-defined]  # picked first
        flaky = c.trainers[0].node.peer_id.to_base58()
        status = await run_job(c, trainers=3, rounds=3)
        assert status["state"] == "done", status
        assert c.trainers[0].reset  # type: ignore[attr-defined]
        history = status["history"]
        assert flaky not in history[0]["trainers"]
        assert all(flaky in r["trainers"] for r in history[1:]), history
        nursery.cancel_scope.cancel()


async def test_a_dead_trainer_still_listed_is_not_assigned_again(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    async with trio.open_nursery() as nursery:
        # No spare: its slot stays open (slots stick to their holders), so forgiving
        # the dead trainer would offer it that slot again.
        kinds: list[type[Trainer]] = [DiesAtRoundTwo, Trainer, Trainer]
        c = await start(nursery, tmp_path, nanio_server, kinds)
        c.trainers[0].node.health_score = 99.0  # type: ignore[attr-defined]  # picked first
        dead = c.trainers[0].node.peer_id.to_base58()
        status = await run_job(c, trainers=3, rounds=4)
        assert status["state"] == "done", status
        history = status["history"]
        assert dead in history[0]["trainers"]
        assert all(dead not in r["trainers"] for r in history[1:]), history
        assert dead in c.owner_node.live_peers()  # presence lists it all along
        assert c.trainers[0].assigns == 2  # type: ignore[attr-defined]  # rounds 1 and 2 only
        assert c.trainers[0].node.refused_requests == 0  # type: ignore[attr-defined]  # no retry
        nursery.cancel_scope.cancel()


def test_forgive_heard_needs_a_presence_after_the_failure() -> None:
    live = LiveJob("j", from_mapping(SMALL))
    live.trainers = {"a": TrainerState.GONE, "b": TrainerState.GONE, "c": TrainerState.GONE}
    live.assign_failed = {"a": 10.0, "b": 10.0, "c": 10.0}
    heard = {"a": 11.0, "b": 9.0}  # c: not live at all
    forgive_heard(live, heard.get)
    assert live.trainers == {
        "a": TrainerState.OFFERED, "b": TrainerState.GONE, "c": TrainerState.GONE
    }
    assert live.assign_failed == {"b": 10.0, "c": 10.0}
