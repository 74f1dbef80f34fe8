"""Owner and trainers over an in-process network, with a real S3 server and real training.

The network is tests/job/memnet.py (libp2p stands aside); signing, sealing, storage,
validation and training are the production code. Adversarial trainers live here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.jobstore import JobStore
from protocols.envelope import open_message
from protocols.errors import SealError
from protocols.job import JOBS_TOPIC, PROTOCOL_ID, job_topic
from protocols.job.owner import Owner, OwnerConfig
from protocols.job.service import request_handler
from protocols.job.spec import from_mapping
from protocols.job.trainer import Trainer
from protocols.job.trainerconfig import TrainerConfig
from protocols.pb import distro_pb2 as pb
from protocols.seal import unseal
from storage.s3 import S3Store
from tests.conftest import wait_until
from tests.job.memnet import MemNet, MemNode
from tests.s3servers import ServerHandle

SMALL = {
    "model": "logreg",
    "dataset": "digits",
    "rounds": 2,
    "epochs": 2,
    "lr": 0.1,
    "batch_size": 16,
    "partition": "iid",
    "round_deadline_s": 60.0,
    "chunk_samples": 200,
}


#: The S3 server runs on loopback, which trainers refuse unless allowed.
LOOPBACK_TRAINER = TrainerConfig(allow_networks=("127.0.0.0/8",))


class HashLiar(Trainer):
    """Uploads its real weights but announces the hash of other bytes."""

    async def announce(self, job_id, round, job, task, result, sha, **sealed):  # type: ignore[no-untyped-def]
        return await super().announce(job_id, round, job, task, result, "0" * 64, **sealed)


class Eavesdropper(Trainer):
    """Listens to job topics it was never assigned to and keeps what it hears."""

    heard: list[bytes]

    async def _offer(self, msg: Any) -> None:
        self.heard = []

        async def keep(data: bytes, _peer: Any) -> None:
            self.heard.append(data)

        self.node.subscribe(job_topic(msg.job_id), keep)


@dataclass
class Cluster:
    owner: Owner
    owner_node: MemNode
    trainers: list[Trainer]


async def start(
    nursery: trio.Nursery, tmp: Path, store: ServerHandle, kinds: list[type[Trainer]],
    **owner: Any,
) -> Cluster:
    net = MemNet(nursery)
    owner_node = net.add()
    owner = Owner(
        owner_node,
        JobStore(tmp / "jobs.sqlite3"),
        lambda: S3Store(store.config),
        OwnerConfig(announce_interval_s=0.2, tick_s=0.05, **owner),
    )
    owner_node.set_stream_handler(
        PROTOCOL_ID, request_handler(owner_node.private_key, owner, Trainer(owner_node))
    )
    await nursery.start(owner.run)
    trainers = []
    for kind in kinds:
        node = net.add()
        t = kind(node, LOOPBACK_TRAINER)
        node.set_stream_handler(PROTOCOL_ID, request_handler(node.private_key, owner, t))
        await nursery.start(t.run)
        trainers.append(t)
    return Cluster(owner, owner_node, trainers)


async def run_job(c: Cluster, **overrides: Any) -> dict[str, Any]:
    job_id = await c.owner.submit(from_mapping({**SMALL, **overrides}))
    await wait_until(
        lambda: (c.owner.status(job_id) or {}).get("state") in ("done", "failed"), 120, "job end"
    )
    status = c.owner.status(job_id)
    assert status is not None
    return status


async def test_digits_job_completes_and_learns(tmp_path: Path, nanio_server: ServerHandle) -> None:
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [Trainer] * 3)
        status = await run_job(c, trainers=3, rounds=3)
        assert status["state"] == "done", status
        history = status["history"]
        assert [r["round"] for r in history] == [1, 2, 3]
        assert history[-1]["test_accuracy"] > 0.85
        assert all(r["accepted"] == 3 for r in history)
        # The first announcement only says the job is being prepared (trainers warm
        # up meanwhile); the ones after it carry the data's sizes.
        sent = [open_message(d).body for t, d in c.owner_node.published if t == JOBS_TOPIC]
        assert sent[0].preparing and sent[0].samples == 0 and not sent[0].model_params_json
        assert not sent[1].preparing and sent[1].samples > 0
        assert all(t.warm.started for t in c.trainers)
        nursery.cancel_scope.cancel()


async def test_encryption_on_by_default_reaches_the_accuracy_of_a_clear_job(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [Trainer] * 2)
        sealed = await run_job(c, trainers=2, rounds=2)
        c.owner.cfg = dataclasses.replace(c.owner.cfg, encrypt=False)
        clear = await run_job(c, trainers=2, rounds=2)
        assert sealed["state"] == clear["state"] == "done", (sealed, clear)
        jobs = c.owner.jobs
        assert jobs.job_key(sealed["job_id"]) is not None and jobs.job_key(clear["job_id"]) is None
        assert all(ch.cipher_sha256 for ch in jobs.chunks(sealed["job_id"]))
        assert not any(ch.cipher_sha256 for ch in jobs.chunks(clear["job_id"]))
        accuracy = [s["history"][-1]["test_accuracy"] for s in (sealed, clear)]
        assert accuracy[0] > 0.85 and abs(accuracy[0] - accuracy[1]) < 0.02, accuracy
        nursery.cancel_scope.cancel()


async def test_update_not_matching_its_hash_is_rejected_and_round_completes(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [HashLiar, Trainer, Trainer, Trainer])
        c.trainers[0].node.health_score = 99.0  # the owner picks the healthiest first
        liar = c.trainers[0].node.peer_id.to_base58()
        status = await run_job(c, trainers=3, spares=1, rounds=2)
        assert status["state"] == "done", status
        for rec in status["history"]:
            assert rec["accepted"] == 3, rec
            assert liar not in rec["trainers"]
        assert "0" * 64 in status["history"][0]["rejected_updates"]
        assert c.owner.jobs.reputation()[liar][0] < 0, "the lie is charged to the liar"
        nursery.cancel_scope.cancel()


async def test_forged_and_replayed_announcements_are_dropped_and_listeners_learn_nothing(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, [Trainer, Trainer, Eavesdropper])
        spy = c.trainers[2]
        assert isinstance(spy, Eavesdropper)
        job_id = await c.owner.submit(from_mapping({**SMALL, "trainers": 2, "rounds": 2}))
        # Wait for round 1's first update announcement and replay/forge it at the owner.
        await wait_until(
            lambda: any(
                t == job_topic(job_id)
                for n in (x.node for x in c.trainers[:2])
                for t, _ in n.published
            ),
            60,
            "an update announcement",
        )
        topic, wire = next(
            (t, d) for x in c.trainers[:2] for t, d in x.node.published if t == job_topic(job_id)
        )
        handler = c.owner_node.topics[topic]
        sender = c.trainers[0].node.peer_id
        await handler(wire, sender)  # the same bytes again: a replay
        forged = bytearray(wire)
        forged[-5] ^= 0x01  # inside the signature
        await handler(bytes(forged), sender)
        await wait_until(lambda: (c.owner.status(job_id) or {}).get("state") == "done", 120)
        status = c.owner.status(job_id)
        assert status is not None
        live_dropped = c.owner.live[job_id].dropped
        # The replay and the forgery are both dropped; the guard may see the forgery's
        # reused nonce before its signature, so either reason may count it.
        assert live_dropped.get("replay", 0) >= 1
        assert live_dropped.get("replay", 0) + live_dropped.get("bad_signature", 0) >= 2
        # Neither charges the peer whose key they carry: it only did honest work.
        assert c.owner.reputation_of(sender.to_base58()) > 0
        assert len(status["history"]) == 2
        # The eavesdropper heard the update announcements but cannot open their URLs.
        notes = [m for m in spy.heard if m]
        assert notes
        from protocols.envelope import open_message

        opened = [open_message(m) for m in notes]
        updates = [o for o in opened if o.kind == "job.update"]
        assert updates
        for o in updates:
            assert isinstance(o.body, pb.UpdateAnnounce)
            with pytest.raises(SealError):
                unseal(
                    o.body.sealed_url,
                    spy.node.private_key,
                    purpose="update-url",
                    job_id=job_id,
                    round=o.round,
                )
        nursery.cancel_scope.cancel()
