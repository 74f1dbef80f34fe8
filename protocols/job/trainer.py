"""The trainer role: offer for fitting jobs, take assignments, train, upload, announce.

A trainer never holds storage credentials and never runs code a peer names: it
downloads its chunks and the global model by presigned URL (verified against the
sha256 in the owner's sealed task), trains a catalogue model in a worker thread,
uploads its weights by presigned POST (or PUT) and announces the update's hash on the
job's topic, with the update's URL sealed to the owner. When the owner stores its
job encrypted, the task carries the keys of exactly this trainer's chunks and of
the round's model (sealed to it with the task), and the trainer encrypts its update
under a fresh key that it seals to the owner (``protocols.job.objects``).

The owner is a stranger, so a trainer defends itself:

- every URL goes through an HTTP client that connects only to public addresses (plus
  the networks in ``allow_networks``), checked on each connection;
- a task over the trainer's compute and memory budget is refused as ``over_budget``
  before torch is imported or anything is allocated (``training.budget``);
- the task's deadline bounds its transfers and training; when it passes the work is
  cancelled, the slot freed and the refusal reason is ``deadline``;
- a refusal carries a reason code only, never error text.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio
from libp2p.peer.id import ID

from distro_errors import DistroError
from protocols.envelope import Opened, ReplayGuard
from protocols.errors import EnvelopeError, SealError
from protocols.job import (
    JOBS_TOPIC,
    PROTOCOL_ID,
    codec,
    compute,
    job_topic,
    lean,
    taskcheck,
    taskfetch,
    taskupload,
)
from protocols.job.chunkcache import ChunkCache
from protocols.job.codec import Kind
from protocols.job.http import LazyClient
from protocols.job.jobmemory import JobMemory, return_free_memory
from protocols.job.ports import NodeLike
from protocols.job.trainerconfig import TrainerConfig
from protocols.job.trainerjobs import KnownJob, cancel_job, remember
from protocols.job.warmup import WarmUp
from protocols.pb import distro_pb2 as pb
from protocols.seal import unseal

if TYPE_CHECKING:
    import httpx

    from protocols.market.earnings import TrainerMarket
    from training.local import TrainResult

log = logging.getLogger("distro_train.trainer")


class Trainer:
    """The trainer behaviour of one daemon. Start with ``nursery.start(trainer.run)``."""

    def __init__(
        self,
        node: NodeLike,
        cfg: TrainerConfig | None = None,
        on_load: Callable[[int], None] | None = None,
        on_device: Callable[[str], None] | None = None,
    ) -> None:
        self.node = node
        self.on_load = on_load
        self.cfg = cfg or TrainerConfig()
        self.warm = WarmUp(node, self.cfg.device, on_device)
        self.replay = ReplayGuard()
        self.jobs: OrderedDict[str, KnownJob] = OrderedDict()
        self.busy = 0
        self.dropped: dict[str, int] = {}
        # Totals since start, for metrics.
        self.tasks: Counter[str] = Counter()
        self.bytes_in = 0
        self.bytes_out = 0
        self.model_deltas = 0  # global models rebuilt from a delta, not fetched whole
        data_dir = getattr(getattr(getattr(node, "config", None), "node", None), "data_dir", None)
        self.chunk_cache = ChunkCache(
            Path(data_dir or ".") / "chunk-cache",
            self.cfg.chunk_cache_bytes if data_dir is not None else 0,
        )
        self.memory = JobMemory(self.cfg.job_memory_bytes)
        self._nursery: trio.Nursery | None = None
        self._http = LazyClient(allow_networks=self.cfg.allow_networks)
        # The market (protocols.market.earnings.TrainerMarket), set by the daemon;
        # None: unpaid jobs only.
        self.market: TrainerMarket | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for jobs until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.node.subscribe(JOBS_TOPIC, self._on_announce)
                task_status.started()
                await trio.sleep_forever()
        finally:
            await self._http.aclose()

    def status(self) -> dict[str, Any]:
        """What this trainer is doing, for ``node.status``."""
        return {
            "busy": self.busy,
            "slots": self.cfg.slots,
            "jobs": {
                j: {"state": k.state, "rounds_done": k.rounds_done, **k.last_metrics}
                for j, k in self.jobs.items()
            },
            "dropped": dict(self.dropped),
            "bytes_in": self.bytes_in,
            "model_deltas": self.model_deltas,
            "chunk_cache": {"hits": self.chunk_cache.hits, "misses": self.chunk_cache.misses,
                            "hit_bytes": self.chunk_cache.hit_bytes},
        }

    def _drop(self, reason: str, detail: str = "") -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        log.info("dropped message: %s %s", reason, detail)

    async def _on_announce(self, data: bytes, from_peer: ID) -> None:
        try:
            msg = codec.decode(data, frozenset({Kind.ANNOUNCE}), replay=self.replay)
        except EnvelopeError as exc:
            self._drop(exc.reason, exc.sender)
            return
        if msg.sender == self.node.peer_id:
            return
        ann = msg.body
        assert isinstance(ann, pb.JobAnnounce)
        assert self._nursery is not None
        if ann.preparing:  # no offer yet: at most a head start on loading torch
            if taskcheck.may_fit(ann, self.cfg, self.node.health(), self.market):
                self.warm.for_job(ann, self._nursery)
            return
        known = self.jobs.get(msg.job_id)
        now = time.monotonic()
        if known is not None:
            # Offer again now and then: a restarted owner has forgotten its offers.
            if known.owner != msg.sender or now - known.offered_at < self.cfg.reoffer_after_s:
                return
            known.offered_at = now
            self._nursery.start_soon(self._offer, msg)
            return
        if not taskcheck.job_fits(ann, self.cfg, self.node.health(), self.market):
            return
        job = KnownJob(msg.sender, msg.public_key, ann, offered_at=now)
        if not remember(self.jobs, msg.job_id, job, self.cfg.known_jobs, self.cfg.jobs_per_owner):
            self._drop("jobs_full")
            return
        self._nursery.start_soon(self._offer, msg)
        self.warm.for_job(ann, self._nursery)

    def offer_for(self, msg: Opened) -> pb.Offer:
        """What we tell an owner about ourselves when offering for its job."""
        me = self.node.health()
        paid = isinstance(msg.body, pb.JobAnnounce) and bool(msg.body.price_budget)
        market: dict[str, Any] = {}
        if self.market is not None and paid:
            market = self.market.offer_fields(self.node.peer_id.to_base58(), self.busy)
        return codec.offer(
            health=float(me.get("health", 0)),
            free_slots=max(0, self.cfg.slots - self.busy),
            cpu_count=int(me.get("cpu_count", 1)),
            **market,
        )

    async def _offer(self, msg: Opened) -> None:
        ann = msg.body
        if self.market is not None and isinstance(ann, pb.JobAnnounce) and ann.price_budget:
            # A paid job is worked for only once its budget is escrowed on the ledger.
            if not await trio.to_thread.run_sync(self.market.escrowed, msg.job_id, ann):
                self._drop("no_escrow", msg.job_id)
                return
        offer = self.offer_for(msg)
        wire = codec.encode(self.node.private_key, Kind.OFFER, offer, job_id=msg.job_id)
        try:
            with trio.fail_after(self.cfg.request_timeout_s):
                reply = await self.node.request(
                    msg.sender, PROTOCOL_ID, wire, self.cfg.request_timeout_s
                )
            ack = codec.decode(reply, frozenset({Kind.ACK}), sender=msg.sender)
        except (trio.TooSlowError, EnvelopeError, OSError) as exc:
            log.info("offer for job %s to %s failed: %r", msg.job_id, msg.sender, exc)
            return
        except Exception as exc:  # noqa: BLE001 - libp2p stream errors have no common base
            log.info("offer for job %s to %s failed: %r", msg.job_id, msg.sender, exc)
            return
        assert isinstance(ack.body, pb.Ack)
        job = self.jobs.get(msg.job_id)
        if job is not None:
            job.state = "selected-pending" if ack.body.ok else "declined"

    async def handle_receipts(self, msg: Opened) -> pb.Ack:
        """Keep the receipts a job's owner signed us for a round (docs/ledger.md)."""
        job = self.jobs.get(msg.job_id)
        if job is None or job.owner != msg.sender or self.market is None:
            return codec.ack(False, "unknown_job")
        assert isinstance(msg.body, pb.Receipts)
        kept, reason = await trio.to_thread.run_sync(
            self.market.take, msg.job_id, job.announce, msg.body
        )
        log.info("job %s round %d: kept %d receipts", msg.job_id, msg.round, kept)
        return codec.ack(not reason, reason)

    def handle_cancel(self, msg: Opened) -> pb.Ack:
        """The job's owner cancelled it (``trainerjobs.cancel_job``)."""
        return cancel_job(self.jobs, self.memory, msg)

    async def handle_assign(self, msg: Opened) -> pb.Ack:
        """Check an owner's assignment and start the work; the Ack answers the request."""
        job = self.jobs.get(msg.job_id)
        if job is None or job.owner != msg.sender or job.state == "cancelled":
            return codec.ack(False, "unknown_job")
        assert isinstance(msg.body, pb.Assign)
        try:
            raw = unseal(
                msg.body.sealed_task,
                self.node.private_key,
                purpose="task",
                job_id=msg.job_id,
                round=msg.round,
            )
            task = pb.Task.FromString(raw)
        except (SealError, Exception):  # noqa: BLE001 - any undecodable task is refused
            return codec.ack(False, "bad_task")
        problem = taskcheck.task_problem(task, job.announce, self.cfg)
        if problem:
            return codec.ack(False, problem)
        if self.busy >= self.cfg.slots:
            return codec.ack(False, "busy")
        self.busy += 1
        if self.on_load:
            self.on_load(self.busy)
        job.state = "training"
        assert self._nursery is not None
        self.warm.start(self._nursery)
        self._nursery.start_soon(self._work, msg.job_id, msg.round, job, task)
        return codec.ack(True)

    async def _work(self, job_id: str, round: int, job: KnownJob, task: pb.Task) -> None:
        stop, reason = threading.Event(), ""
        scope = trio.move_on_after(taskcheck.seconds_left(task, self.cfg.max_task_s))
        job.running.add(scope)  # cancel_job stops it
        try:
            with scope:
                await self._do_task(job_id, round, job, task, stop)
            if scope.cancelled_caught and job.state == "cancelled":
                log.info("job %s round %d: cancelled by its owner; task stopped", job_id, round)
            elif scope.cancelled_caught:
                reason = "deadline"
                log.warning("job %s round %d: deadline passed; task abandoned", job_id, round)
        except Exception as exc:  # noqa: BLE001 - task boundary: report, never crash the daemon
            reason = exc.reason if isinstance(exc, DistroError) else "error"
            log.warning("job %s round %d failed: %r", job_id, round, exc)
        finally:
            # The training thread (if any) sees this at its next batch and ends.
            stop.set()
            job.running.discard(scope)
            self.busy -= 1
            if self.on_load:
                self.on_load(self.busy)
        if reason and job.state != "cancelled":
            job.state = "failed-task"
            self.tasks[reason] += 1
            await self._refuse(job_id, round, job.owner, reason)

    async def _do_task(
        self, job_id: str, round: int, job: KnownJob, task: pb.Task, stop: threading.Event
    ) -> None:
        """Fetch, check the spec, train, upload and announce one task."""
        client = self._http.get()
        inputs = await taskfetch.fetch_task(
            job_id, task, client, self.chunk_cache, self.memory, self.cfg.max_model_bytes
        )
        model, chunks = inputs.model, inputs.chunks
        self.bytes_in += inputs.bytes_in
        self.model_deltas += int(inputs.by_delta)
        del inputs  # from here only ``chunks`` holds the data
        if not job.checked:
            # The catalogue lives with torch: checked in a thread, after the Ack, so a
            # trainer still importing torch answers its owner at once, and after the
            # fetch, which overlaps that import (round 1's warm-up). A bad spec is
            # refused through the same path as any failed task.
            await trio.to_thread.run_sync(
                compute.check_job,
                job.announce.model_params_json,
                job.announce.train_params_json,
            )
            job.checked = True
        job.nonce, job.deterministic = task.nonce[:64], task.deterministic
        result = await self.train_task(job, model, chunks, stop)
        result = await lean.compressed(self.memory, job_id, round, job.announce, task, model,
                                       result)
        note = await self.upload_and_announce(job_id, round, job, task, result, client)
        self.bytes_out += note.size
        self.tasks["done"] += 1
        job.rounds_done += 1
        job.state = "announced"
        job.last_metrics = {"loss": note.train_loss, "accuracy": note.train_accuracy}
        log.info("job %s round %d: update %s announced", job_id, round, note.sha256[:12])

    async def train_task(
        self, job: KnownJob, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        """Train the job's catalogue model on verified ``chunks`` in a worker thread.

        Cancellation returns at once; the abandoned thread sees ``stop`` at its next
        batch and ends.
        """
        def run() -> TrainResult:
            return_free_memory()  # the last task's garbage, before this one's peak
            return compute.train(
                job.announce.model_params_json,
                job.announce.train_params_json,
                model,
                chunks,
                threads=1 if job.deterministic else self.cfg.train_threads,
                should_stop=stop.is_set,
                nonce=job.nonce,
                device="cpu" if job.deterministic else self.cfg.device,
                release_chunks=True,  # _do_task keeps no use for them
            )

        return await trio.to_thread.run_sync(run, abandon_on_cancel=True)

    async def upload_and_announce(
        self, job_id: str, round: int, job: KnownJob, task: pb.Task, result: TrainResult,
        client: httpx.AsyncClient,
    ) -> pb.UpdateAnnounce:
        """Upload the trained weights by the task's URL and announce their hash."""
        cipher_sha, sealed_key = await taskupload.upload_update(
            task, result.weights, job.owner_key, client,
            job_id=job_id, round=round, trainer=self.node.peer_id.to_base58(),
        )
        sha = compute.sha256(result.weights)
        return await self.announce(
            job_id, round, job, task, result, sha, cipher_sha=cipher_sha, sealed_key=sealed_key
        )

    async def announce(
        self, job_id: str, round: int, job: KnownJob, task: pb.Task, result: TrainResult,
        sha: str, *, cipher_sha: str = "", sealed_key: bytes = b"",
    ) -> pb.UpdateAnnounce:
        """Publish the update's hash and metrics, its URL (and key) sealed to the owner.

        ``sha`` is the update's plaintext hash; an encrypted update adds the hash of
        its ciphertext and its key sealed to the owner.
        """
        note = taskupload.update_note(
            task, result, sha, job.owner_key,
            job_id=job_id, round=round, cipher_sha=cipher_sha, sealed_key=sealed_key,
        )
        wire = codec.encode(self.node.private_key, Kind.UPDATE, note, job_id=job_id, round=round)
        await self.node.publish(job_topic(job_id), wire)
        return note

    async def _refuse(self, job_id: str, round: int, owner: ID, reason: str) -> None:
        """Tell the owner we give up this round's task, so it reassigns at once.

        Only the reason code travels: error text could tell a hostile owner what
        the addresses its URLs named answered.
        """
        wire = codec.encode(
            self.node.private_key, Kind.ACK, codec.ack(False, reason), job_id=job_id, round=round
        )
        with trio.move_on_after(self.cfg.request_timeout_s):
            try:
                await self.node.request(owner, PROTOCOL_ID, wire, self.cfg.request_timeout_s)
            except Exception as exc:  # noqa: BLE001 - best effort; the round deadline covers it
                log.info("could not tell %s about refusal: %r", owner, exc)
