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

import ipaddress
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import trio
from libp2p.crypto.keys import PublicKey
from libp2p.peer.id import ID
from pydantic import Field

from distro_errors import DistroError
from protocols.envelope import Opened, ReplayGuard
from protocols.errors import EnvelopeError, SealError
from protocols.job import JOBS_TOPIC, PROTOCOL_ID, codec, compute, job_topic, lean, objects
from protocols.job.chunkcache import ChunkCache
from protocols.job.codec import Kind
from protocols.job.http import LazyClient
from protocols.job.jobmemory import JobMemory
from protocols.job.ports import NodeLike
from protocols.job.spec import MODELS
from protocols.pb import distro_pb2 as pb
from protocols.seal import seal, unseal
from storage import crypto
from training import budget

if TYPE_CHECKING:
    import httpx

    from protocols.market.earnings import TrainerMarket
    from training.local import TrainResult

log = logging.getLogger("distro_train.trainer")


@dataclass(frozen=True)
class TrainerConfig:
    """Limits and timeouts of the trainer role.

    Attributes:
        slots: Assignments worked on at once; more are refused as ``busy``.
        max_data_bytes: Largest total of chunks one assignment may bring.
        max_model_bytes: Largest model or update accepted.
        max_chunks: Most chunks in one assignment.
        request_timeout_s: Wait for an owner's answer to an offer or refusal.
        train_threads: torch threads per training run (0 = torch's default).
        known_jobs: Announced jobs remembered; only jobs merely offered for are
            forgotten to make room, oldest first.
        jobs_per_owner: Announced jobs remembered per owner key.
        reoffer_after_s: Offer again for a known job announced after this long.
        allow_networks: CIDR networks a task's URLs may reach besides public
            addresses. Empty (the default) refuses loopback, link-local, private,
            multicast, reserved and unspecified addresses; a single-machine run
            allows ``["127.0.0.0/8"]``.
        max_task_s: Longest a task may run when its own deadline is later or absent.
        max_params: Largest model (trainable parameters) a task may train.
        max_activation_bytes: Largest estimated activation memory of one batch.
        max_sample_epochs: Most samples x epochs in one task.
        max_threads: Most torch threads a task may ask for.
        max_flops: Most floating-point operations of one task (forward and backward,
            every sample and epoch; ``training.budget``).
        device: Where tasks train: ``cpu``, ``cuda``, or ``auto`` (CUDA when torch
            sees it). The presence status advertises the GPU only when tasks train
            on it (known once torch is loaded, at the first announcement). Tasks the
            owner marks deterministic (replicas it compares) train on the CPU.
    """

    slots: int = 1
    max_data_bytes: int = 512 * 1024 * 1024
    max_model_bytes: int = 64 * 1024 * 1024
    max_chunks: int = 4096
    request_timeout_s: float = 30.0
    train_threads: int = 0
    known_jobs: int = 256
    jobs_per_owner: int = 8
    reoffer_after_s: float = 8.0
    # A TOML array arrives as a list; lax mode lets it become the tuple.
    allow_networks: Annotated[tuple[str, ...], Field(strict=False)] = ()
    max_task_s: float = 3600.0
    max_params: int = budget.Limits.max_params
    max_activation_bytes: int = budget.Limits.max_activation_bytes
    max_sample_epochs: int = budget.Limits.max_sample_epochs
    max_threads: int = budget.Limits.max_threads
    max_flops: int = budget.Limits.max_flops
    device: Literal["auto", "cpu", "cuda"] = "auto"
    chunk_cache_bytes: Annotated[int, Field(ge=0)] = 1024 * 1024 * 1024
    """Chunks kept on disk (DATA_DIR/chunk-cache) by hash across rounds and jobs; 0: off."""
    job_memory_bytes: Annotated[int, Field(ge=0)] = 256 * 1024 * 1024
    """Memory for what a job's next task reuses (error-feedback residuals, the last
    global model as a delta's base; ``protocols.job.jobmemory``); 0: none kept."""

    def __post_init__(self) -> None:
        """Check ``allow_networks`` (a bad network raises ValueError at start)."""
        for net in self.allow_networks:
            ipaddress.ip_network(net, strict=False)

    @property
    def limits(self) -> budget.Limits:
        """The compute and memory budget of one task."""
        return budget.Limits(
            max_params=self.max_params,
            max_activation_bytes=self.max_activation_bytes,
            max_sample_epochs=self.max_sample_epochs,
            max_threads=self.max_threads,
            max_flops=self.max_flops,
        )


IDLE_STATES = ("offered", "declined")
"""Jobs in these states may be forgotten to make room for newly announced ones."""
WARM_UP_ODDS = 4
"""torch is loaded on an announcement when the job wants >= 1/this of the live daemons."""


@dataclass
class _Job:
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
        self.on_device = on_device
        self.cfg = cfg or TrainerConfig()
        self.replay = ReplayGuard()
        self.jobs: OrderedDict[str, _Job] = OrderedDict()
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
        self._warm = False
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
        known = self.jobs.get(msg.job_id)
        now = time.monotonic()
        if known is not None:
            # Offer again now and then: a restarted owner has forgotten its offers.
            if known.owner != msg.sender or now - known.offered_at < self.cfg.reoffer_after_s:
                return
            known.offered_at = now
            assert self._nursery is not None
            self._nursery.start_soon(self._offer, msg)
            return
        ann = msg.body
        assert isinstance(ann, pb.JobAnnounce)
        if not self._fits(ann):
            return
        if not self._remember(msg.job_id, _Job(msg.sender, msg.public_key, ann, offered_at=now)):
            self._drop("jobs_full")
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._offer, msg)
        if not self._warm and self._likely_picked(ann):
            # Importing torch takes seconds; do it now, off the loop, not when the
            # owner's assignment is waiting for our answer. Not when the job wants few
            # of many daemons: torch costs each one ~250 MB (the first task loads it).
            self._warm = True
            self._nursery.start_soon(self._warm_up)

    def _likely_picked(self, ann: pb.JobAnnounce) -> bool:
        """Whether ``ann`` wants at least 1/``WARM_UP_ODDS`` of the live daemons we know."""
        return ann.trainers_wanted * WARM_UP_ODDS >= len(self.node.live_peers())

    async def _warm_up(self) -> None:
        """Load torch and settle the device; advertise the GPU only if tasks use it."""
        try:
            gpu = await trio.to_thread.run_sync(compute.warm_up, self.cfg.device)
        except DistroError as exc:  # cuda asked for, none here: every task will refuse
            log.error("trainer: %s", exc)
            gpu = ""
        if self.on_device is not None:
            self.on_device(gpu)

    def _remember(self, job_id: str, job: _Job) -> bool:
        """Add ``job`` to the bounded table; False when it has no room.

        A job id belongs to the key that first announced it (another sender's
        announcement of it is ignored). When the table is full, the oldest job we
        merely offered for or were declined by is forgotten; a job we were
        selected for or are training is never evicted by announcements, and one
        owner holds at most ``jobs_per_owner`` entries.
        """
        mine = sum(1 for k in self.jobs.values() if k.owner == job.owner)
        if mine >= self.cfg.jobs_per_owner:
            return False
        if len(self.jobs) >= self.cfg.known_jobs:
            idle = next((j for j, k in self.jobs.items() if k.state in IDLE_STATES), None)
            if idle is None:
                return False
            del self.jobs[idle]
        self.jobs[job_id] = job
        return True

    def _fits(self, ann: pb.JobAnnounce) -> bool:
        me = self.node.health()
        if ann.model_name not in MODELS or ann.expires_ms < time.time() * 1000:
            return False
        if ann.data_bytes_per_trainer > self.cfg.max_data_bytes:
            return False
        if self._over_budget(ann, ann.data_bytes_per_trainer, ann.samples):
            return False
        if ann.price_budget and (self.market is None or not self.market.accepts(ann)):
            return False
        return bool(me.get("accepting")) and float(me.get("health", 0)) >= ann.min_health

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

    async def handle_assign(self, msg: Opened) -> pb.Ack:
        """Check an owner's assignment and start the work; the Ack answers the request."""
        job = self.jobs.get(msg.job_id)
        if job is None or job.owner != msg.sender:
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
        problem = self._check_task(task, job)
        if problem:
            return codec.ack(False, problem)
        if self.busy >= self.cfg.slots:
            return codec.ack(False, "busy")
        self.busy += 1
        if self.on_load:
            self.on_load(self.busy)
        job.state = "training"
        assert self._nursery is not None
        if not self._warm:
            self._warm = True
            self._nursery.start_soon(self._warm_up)
        self._nursery.start_soon(self._work, msg.job_id, msg.round, job, task)
        return codec.ack(True)

    def _check_task(self, task: pb.Task, job: _Job) -> str:
        if task.model_bytes > self.cfg.max_model_bytes:
            return "oversize_model"
        if len(task.chunks) == 0 or len(task.chunks) > self.cfg.max_chunks:
            return "bad_chunks"
        if sum(c.size for c in task.chunks) > self.cfg.max_data_bytes:
            return "oversize_data"
        if not _keys_well_formed(task):
            return "bad_keys"
        if lean.task_problem(task):
            return lean.task_problem(task)
        if any(c.key and c.cipher_size > crypto.max_sealed_size(c.size) for c in task.chunks):
            # What is downloaded is bounded by the plaintext sizes checked above.
            return "oversize_data"
        urls = [task.model_url, task.upload_url, task.update_get_url, *(c.url for c in task.chunks)]
        if not all(u.startswith(("http://", "https://")) for u in urls):
            return "bad_url"
        if task.deadline_ms and task.deadline_ms <= time.time() * 1000:
            return "deadline"
        samples = sum(c.samples for c in task.chunks)
        return self._over_budget(job.announce, sum(c.size for c in task.chunks), samples)

    def _over_budget(self, ann: pb.JobAnnounce, data_bytes: int, samples: int) -> str:
        """The reason a job's task is beyond our budget (torch-free), or ""."""
        try:
            cost = budget.estimate(
                compute.json_object(ann.model_params_json, "model"),
                compute.json_object(ann.train_params_json, "train params"),
                data_bytes=data_bytes,
                samples=samples,
            )
            budget.check(cost, self.cfg.limits)
        except DistroError as exc:
            return exc.reason
        except ValueError:
            return "bad_spec"
        return ""

    def _seconds_left(self, task: pb.Task) -> float:
        """Seconds until the task must be over: its deadline, capped by ``max_task_s``."""
        left = self.cfg.max_task_s
        if task.deadline_ms:
            left = min(left, task.deadline_ms / 1000 - time.time())
        return max(0.0, left)

    async def _work(self, job_id: str, round: int, job: _Job, task: pb.Task) -> None:
        stop = threading.Event()
        reason = ""
        try:
            with trio.move_on_after(self._seconds_left(task)) as scope:
                await self._do_task(job_id, round, job, task, stop)
            if scope.cancelled_caught:
                reason = "deadline"
                log.warning("job %s round %d: deadline passed; task abandoned", job_id, round)
        except Exception as exc:  # noqa: BLE001 - task boundary: report, never crash the daemon
            reason = exc.reason if isinstance(exc, DistroError) else "error"
            log.warning("job %s round %d failed: %r", job_id, round, exc)
        finally:
            # The training thread (if any) sees this at its next batch and ends.
            stop.set()
            self.busy -= 1
            if self.on_load:
                self.on_load(self.busy)
        if reason:
            job.state = "failed-task"
            self.tasks[reason] += 1
            await self._refuse(job_id, round, job.owner, reason)

    async def _do_task(
        self, job_id: str, round: int, job: _Job, task: pb.Task, stop: threading.Event
    ) -> None:
        """Fetch, check the spec, train, upload and announce one task."""
        from storage import transfer  # httpx only when working

        client = self._http.get()
        max_model = self.cfg.max_model_bytes
        items = [
            transfer.FetchItem(task.model_url, task.model_sha256, max_model)
            if not task.model_key
            else transfer.FetchItem(
                task.model_url, task.model_cipher_sha256, crypto.sealed_size(max_model)
            ),
            *(
                transfer.FetchItem(c.url, c.cipher_sha256, c.cipher_size)
                if c.key
                else transfer.FetchItem(c.url, c.sha256, c.size)
                for c in task.chunks
            ),
        ]
        # Chunks this trainer fetched before (a later round, another job) come from its
        # cache, by the hash they are fetched under: only the others cross the network.
        keys = [c.cipher_sha256 if c.key else c.sha256 for c in task.chunks]
        cached = await trio.to_thread.run_sync(lambda: [self.chunk_cache.get(k) for k in keys])
        # The model as a delta against the one the last task trained from, when offered.
        by_delta = await lean.model_by_delta(self.memory, job_id, task, client, max_model)
        known = by_delta[0] if by_delta is not None else None
        head = [items[0]] if known is None else []
        wanted = [*head, *(it for it, hit in zip(items[1:], cached, strict=True) if hit is None)]
        got = await transfer.fetch_many(wanted, client=client)
        model, fetched = (got[0], got[1:]) if known is None else (b"", got)
        self.bytes_in += len(model) + sum(len(c) for c in fetched)
        if by_delta is not None:
            self.bytes_in += by_delta[1]
            self.model_deltas += 1
        new = iter(fetched)
        chunks = [hit if hit is not None else next(new) for hit in cached]
        fresh = [(k, d) for k, hit, d in zip(keys, cached, chunks, strict=True) if hit is None]

        def keep() -> None:
            for k, d in fresh:
                self.chunk_cache.put(k, d)

        await trio.to_thread.run_sync(keep)
        # From here only ``chunks`` holds the data, and _open_task frees each ciphertext
        # as it opens it: a task's chunks are never in memory twice.
        del got, fetched, new, cached
        fresh.clear()
        if task.model_key or any(c.key for c in task.chunks):
            model, chunks = await trio.to_thread.run_sync(
                _open_task, job_id, task, model if known is None else None, chunks
            )
        model = model if known is None else known
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
        self, job: _Job, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        """Train the job's catalogue model on verified ``chunks`` in a worker thread.

        Cancellation returns at once; the abandoned thread sees ``stop`` at its next
        batch and ends.
        """
        return await trio.to_thread.run_sync(
            lambda: compute.train(
                job.announce.model_params_json,
                job.announce.train_params_json,
                model,
                chunks,
                threads=1 if job.deterministic else self.cfg.train_threads,
                should_stop=stop.is_set,
                nonce=job.nonce,
                device="cpu" if job.deterministic else self.cfg.device,
                release_chunks=True,  # _do_task keeps no use for them
            ),
            abandon_on_cancel=True,
        )

    async def upload_and_announce(
        self,
        job_id: str,
        round: int,
        job: _Job,
        task: pb.Task,
        result: TrainResult,
        client: httpx.AsyncClient,
    ) -> pb.UpdateAnnounce:
        """Upload the trained weights by the task's URL and announce their hash."""
        from storage import transfer

        body, cipher_sha, sealed_key = result.weights, "", b""
        if task.encrypt_update:
            # A fresh key for this update alone, readable by the owner only.
            secret = crypto.new_key()
            oid = objects.update_id(job_id, round, self.node.peer_id.to_base58())
            body = await trio.to_thread.run_sync(crypto.encrypt, secret, oid, result.weights)
            cipher_sha = compute.sha256(body)
            sealed_key = seal(
                secret,
                job.owner_key,
                purpose=objects.UPDATE_KEY_PURPOSE,
                job_id=job_id,
                round=round,
            )
        await transfer.upload(
            task.upload_url,
            body,
            content_type=task.upload_content_type or "application/octet-stream",
            fields=dict(task.upload_fields) or None,
            client=client,
        )
        sha = compute.sha256(result.weights)
        return await self.announce(
            job_id, round, job, task, result, sha, cipher_sha=cipher_sha, sealed_key=sealed_key
        )

    async def announce(
        self,
        job_id: str,
        round: int,
        job: _Job,
        task: pb.Task,
        result: TrainResult,
        sha: str,
        *,
        cipher_sha: str = "",
        sealed_key: bytes = b"",
    ) -> pb.UpdateAnnounce:
        """Publish the update's hash and metrics, its URL (and key) sealed to the owner.

        ``sha`` is the update's plaintext hash; an encrypted update adds the hash of
        its ciphertext and its key sealed to the owner.
        """
        sealed_url = seal(
            task.update_get_url.encode(),
            job.owner_key,
            purpose="update-url",
            job_id=job_id,
            round=round,
        )
        m = result.metrics
        note = codec.update_note(
            sha256=sha,
            size=len(result.weights),
            samples=m.samples,
            loss=m.loss,
            accuracy=m.accuracy,
            seconds=m.seconds,
            sealed_url=sealed_url,
            cipher_sha256=cipher_sha,
            sealed_key=sealed_key,
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


def _keys_well_formed(task: pb.Task) -> bool:
    """Whether every key in ``task`` is a 32-byte key with a ciphertext hash beside it."""
    pairs = [(task.model_key, task.model_cipher_sha256)]
    pairs += [(c.key, c.cipher_sha256) for c in task.chunks]
    return all(
        (not key and not sha)
        or (len(key) == objects.KEY_BYTES and codec.SHA256_HEX.fullmatch(sha) is not None)
        for key, sha in pairs
    )


def _open_task(
    job_id: str, task: pb.Task, model: bytes | None, chunks: list[bytes]
) -> tuple[bytes, list[bytes]]:
    """Decrypt a task's verified ciphertexts and check their plaintext hashes (blocking).

    ``model`` None: the model came by delta, already open (b"" comes back for it).
    ``chunks`` is opened in place (and returned): each ciphertext is let go as soon
    as its plaintext is checked.

    Raises:
        storage.crypto.DecryptError: an object does not decrypt under its key and
            identity (``undecryptable``).
        storage.errors.HashMismatch: a plaintext is not the one the task names.
    """
    from storage.errors import HashMismatch

    def opened(url: str, key: bytes, oid: crypto.ObjectId, data: bytes, sha: str) -> bytes:
        plain = crypto.decrypt(key, oid, data) if key else data
        if key and compute.sha256(plain) != sha:
            raise HashMismatch(url, sha, compute.sha256(plain))
        return plain

    model_oid = objects.model_id(job_id, task.model_round, task.model_sha256)
    out_model = b"" if model is None else opened(
        task.model_url, task.model_key, model_oid, model, task.model_sha256
    )
    if len(chunks) != len(task.chunks):
        raise ValueError("one ciphertext per chunk of the task")
    for i, c in enumerate(task.chunks):  # in place: each ciphertext freed once opened
        chunks[i] = opened(c.url, c.key, objects.chunk_id(job_id, c.sha256), chunks[i], c.sha256)
    return out_model, chunks
