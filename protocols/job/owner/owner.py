"""The owner: answers the control API and runs each submitted job to its end.

Each running job is one task in the owner's nursery. Its loop prepares the data,
recruits trainers, then runs and closes rounds; every closed round is recorded in
the job store in one transaction, so a restarted owner resumes after its last one.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from protocols.envelope import Opened
from protocols.job import codec, job_topic, jobdata
from protocols.job.http import LazyClient
from protocols.job.objects import JobKey
from protocols.job.owner.close import RoundCloser
from protocols.job.owner.config import LiveJob, OwnerConfig, OwnerEnv, OwnerStats
from protocols.job.owner.pay import end_on_ledger
from protocols.job.owner.prepare import JobData, prepare_data, store_job
from protocols.job.owner.recruit import Recruiter
from protocols.job.owner.reputation import Reputation
from protocols.job.owner.round import RoundOutcome, RoundRunner
from protocols.job.ports import JobRow, JobStoreLike, NodeLike
from protocols.job.records import JobState, Phase, TrainerState
from protocols.job.spec import JobSpec, loads
from protocols.pb import distro_pb2 as pb
from storage.store import job_prefix

if TYPE_CHECKING:
    from protocols.market.settle import Settlement

log = logging.getLogger("distro_train.owner")
ACTIVE = (JobState.PREPARING, JobState.RUNNING)


class Owner:
    """The owner behaviour of one daemon. Start with ``nursery.start(owner.run)``.

    Args:
        node: The daemon (see ``protocols.job.ports.NodeLike``).
        jobs: The daemon's job store (see ``protocols.job.ports.JobStoreLike``).
        open_store: Returns the object store (blocking; called once, in a thread).
        cfg: Settings of the ``[owner]`` table.
    """

    def __init__(
        self,
        node: NodeLike,
        jobs: JobStoreLike,
        open_store: Callable[[], Any],
        cfg: OwnerConfig | None = None,
        market: Settlement | None = None,
    ) -> None:
        self.node = node
        self.jobs = jobs
        self.cfg = cfg or OwnerConfig()
        self.stats = OwnerStats()
        self.reputation = Reputation(jobs, self.cfg.reputation)
        self.live: dict[str, LiveJob] = {}
        self._open_store = open_store
        self._store: Any = None
        self._http = LazyClient()
        self._start: Callable[[str, JobSpec], None] | None = None
        env = OwnerEnv(
            node,
            jobs,
            self.cfg,
            self.reputation,
            self.stats,
            self._http,
            self._get_store,
            self._prefix,
            market,
        )
        env.verified.update(jobs.contributions())
        self.market = market
        self.recruiter = Recruiter(env)
        self.rounds = RoundRunner(env)
        self.closer = RoundCloser(env)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resume unfinished jobs, then run submitted ones until cancelled."""
        try:
            async with trio.open_nursery() as nursery:

                def start(job_id: str, spec: JobSpec) -> None:
                    live = LiveJob(job_id, spec)
                    self.live[job_id] = live
                    nursery.start_soon(self._run_job, live)

                self._start = start
                for row in self.jobs.jobs():
                    if row.state in ACTIVE:
                        log.info("resuming job %s after round %d", row.job_id, row.completed_round)
                        start(row.job_id, loads(row.spec_json, fmt="json"))
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._start = None
            await self._http.aclose()

    # control API ------------------------------------------------------------

    async def check(self, spec: JobSpec) -> dict[str, Any] | None:
        """Read a job's own data and fit its model, as :meth:`submit` does first.

        Returns:
            ``jobdata.check_data``'s summary (samples per split, classes, the model,
            its parameters, FLOPs and activation bytes per sample), or None for a
            bundled dataset with a catalogue model and no initial weights (nothing
            of the owner's to read).

        Raises:
            training.errors.SpecError: the owner's data is unusable (``DataError``,
                naming the file, row or column) or does not fit the model.
        """
        if spec.data.path or spec.model == "custom" or spec.initial_weights:
            summary: dict[str, Any] = await trio.to_thread.run_sync(jobdata.check_data, spec)
            return summary
        return None

    async def submit(self, spec: JobSpec, *, checked: bool = False) -> str:
        """Record and start a job; returns its id.

        Unless ``checked`` (the caller ran :meth:`check`), the job is checked first,
        so bad data is refused before anything is stored or uploaded.

        Raises:
            RuntimeError: the owner is not running.
            training.errors.SpecError: as :meth:`check`.
        """
        if self._start is None:
            raise RuntimeError("the owner is not running")
        if not checked:
            await self.check(spec)
        job_id = os.urandom(8).hex()
        self.jobs.create_job(job_id, spec.to_json())
        self._start(job_id, spec)
        log.info(
            "job %s submitted: %s on %s, %d rounds", job_id, spec.model, spec.dataset, spec.rounds
        )
        return job_id

    def status(self, job_id: str) -> dict[str, Any] | None:
        """A job's state, rounds so far and per-trainer state; None when unknown."""
        row = self.jobs.job(job_id)
        if row is None:
            return None
        live = self.live.get(job_id)
        history = self.jobs.rounds(job_id)
        spec = loads(row.spec_json, fmt="json")
        out: dict[str, Any] = {
            "job_id": job_id,
            "state": row.state,
            "phase": str(live.phase) if live else row.state,
            "round": live.round_no if live else row.completed_round,
            "completed_round": row.completed_round,
            "rounds": spec.rounds,
            "model": spec.model,
            "dataset": spec.dataset,
            "rule": spec.rule,
            "model_sha256": row.model_sha256,
            "error": row.error or (live.error if live else ""),
            "trainers": {p: str(s) for p, s in live.trainers.items()} if live else {},
            "offers": len(live.offers) if live else 0,
            "dropped": dict(live.dropped) if live else {},
            # docs/verification.md: who has no full weight yet, who was caught, and how
            "quarantined": dict(live.quarantine) if live else {},
            "cheaters": dict(live.cheaters) if live else {},
            # docs/jobs.md "Sized shares": this round's share of each slot, and why
            "shares": dict(live.shares) if live else {},
            "rejected": sum(r["rejected"] for r in history),
            "history": history,
            "created_ms": row.created_ms,
        }
        if self.market is not None and self.market.status(job_id):
            out["market"] = self.market.status(job_id)
        if history:
            out["test_accuracy"] = history[-1]["test_accuracy"]
            out["test_loss"] = history[-1]["test_loss"]
        return out

    def list_jobs(self) -> list[dict[str, Any]]:
        """Every job, newest first, in brief."""
        return [
            {
                "job_id": r.job_id,
                "state": r.state,
                "completed_round": r.completed_round,
                "created_ms": r.created_ms,
                "model_sha256": r.model_sha256,
                **({"market": self.market.status(r.job_id)}
                   if self.market is not None and self.market.status(r.job_id) else {}),
            }
            for r in self.jobs.jobs()
        ]

    async def result(self, job_id: str) -> dict[str, Any] | None:
        """The final (or latest) model's URL and hash, and the per-round metrics.

        ``model_sha256`` is the model's own (plaintext) hash. For an encrypted job
        ``model_encryption`` holds what opens that one stored model: its key (hex),
        the stored ciphertext's sha256 and its identity (job, round); else None.
        """
        row = self.jobs.job(job_id)
        if row is None:
            return None
        url, encryption = None, None
        rounds = self.jobs.rounds(job_id)
        if row.model_key:
            store = await self._get_store()
            url = await trio.to_thread.run_sync(store.presign_get, row.model_key)
            encryption = await self._model_encryption(row, rounds, store)
        return {
            "job_id": job_id,
            "state": row.state,
            "model_url": url,
            "model_sha256": row.model_sha256,
            "model_encryption": encryption,
            "rounds": rounds,
            "spec": loads(row.spec_json, fmt="json").to_json(),
        }

    async def _model_encryption(
        self, row: JobRow, rounds: list[dict[str, Any]], store: Any
    ) -> dict[str, Any] | None:
        secret = self.jobs.job_key(row.job_id)
        if secret is None or not row.model_sha256 or not row.model_key:
            return None
        number = row.completed_round
        cipher = next(
            (r.get("model_cipher_sha256", "") for r in rounds if r["round"] == number), ""
        )
        if not cipher:  # the initial model has no round record: hash the stored bytes
            stored = await trio.to_thread.run_sync(store.get_bytes, row.model_key)
            cipher = hashlib.sha256(stored).hexdigest()
        key = JobKey(row.job_id, secret).model_key(number, row.model_sha256)
        return {"key": key.hex(), "cipher_sha256": cipher, "job_id": row.job_id, "round": number}

    async def cancel(self, job_id: str) -> bool:
        """Stop a running job; False when it is not running."""
        live = self.live.get(job_id)
        row = self.jobs.job(job_id)
        if row is None or row.state not in ACTIVE:
            return False
        if live is not None:
            live.scope.cancel()
        self.jobs.finish(job_id, JobState.CANCELLED)  # its trainers are told as it ends
        return True

    def reputation_of(self, peer: str) -> float:
        """``peer``'s reputation now (decayed; 0 for a peer we never dealt with)."""
        return self.reputation.of(peer)

    # requests from trainers -------------------------------------------------

    async def handle_offer(self, msg: Opened) -> pb.Ack:
        """A trainer offers itself for one of our jobs."""
        live = self.live.get(msg.job_id)
        if live is None or live.phase in (Phase.DONE, Phase.FAILED):
            return codec.ack(False, "unknown_job")
        answer, joined = self.recruiter.take_offer(live, msg)
        if joined is not None:
            self.rounds.feed(live, joined)
        return answer

    async def handle_refusal(self, msg: Opened) -> pb.Ack:
        """A trainer gives up its task for a round (bad data, over budget, deadline...)."""
        live = self.live.get(msg.job_id)
        if live is not None and msg.round == live.round_no:
            try:
                reason = codec.parse_refusal(msg)
            except codec.BodyError:
                return codec.ack(False, "bad_field")
            log.info("job %s round %d: %s refused: %s", msg.job_id, msg.round, msg.sender, reason)
            self.rounds.refused(live, msg.sender.to_base58())
        return codec.ack(True)

    # one job ----------------------------------------------------------------

    async def _run_job(self, live: LiveJob) -> None:
        try:
            with live.scope:
                await self._drive(live)
        except Exception as exc:  # noqa: BLE001 - task boundary: the job fails, the daemon lives
            log.exception("job %s failed", live.job_id)
            live.phase, live.error = Phase.FAILED, repr(exc)
            self.jobs.finish(live.job_id, JobState.FAILED, repr(exc)[:500])
        finally:
            self.rounds.speeds.forget(live.job_id)
            self.rounds.verifier.forget(live.job_id)
            with trio.CancelScope(shield=True), trio.move_on_after(self.cfg.unsubscribe_timeout_s):
                await self.node.unsubscribe(job_topic(live.job_id))
            row = self.jobs.job(live.job_id)
            if row is not None and row.state == JobState.CANCELLED:
                with trio.CancelScope(shield=True):
                    await self.recruiter.tell_cancelled(live)
            if self.market is not None and live.phase != Phase.DONE:
                await end_on_ledger(self.market, live.job_id, self.cfg.ledger_end_timeout_s)

    async def _drive(self, live: LiveJob) -> None:
        await self.recruiter.announce_preparing(live)  # trainers warm up meanwhile
        prepared = await prepare_data(live)
        self.node.subscribe(job_topic(live.job_id), self.rounds.on_topic(live))
        row = self.jobs.job(live.job_id)
        first = (row.completed_round if row else 0) + 1
        for rec in self.jobs.rounds(live.job_id):  # a resumed job still knows old updates
            live.past_updates.update(rec.get("used_updates", []), rec.get("rejected_updates", []))
        async with trio.open_nursery() as nursery:
            if row is not None and row.state == JobState.PREPARING:
                self.rounds.verifier.start_round_one(live, prepared, nursery)
            if self.market is not None:
                # Escrow before announcing; a resumed job re-queues rounds the log lacks.
                await self.market.open(live.job_id, live.spec.price, self.jobs.rounds(live.job_id))
            nursery.start_soon(self.recruiter.announce_forever, live, prepared)
            data = await self._store_while_recruiting(live, prepared, nursery)
            for number in range(first, live.spec.rounds + 1):
                started = trio.current_time()
                outcome = await self._round(live, data, number)
                if await self.closer.close(live, data, outcome, started):
                    break
            nursery.cancel_scope.cancel()
        if self.market is not None:
            await self.market.finish(live.job_id)
        live.phase = Phase.DONE
        self.jobs.finish(live.job_id, JobState.DONE)

    async def _store_while_recruiting(
        self, live: LiveJob, prepared: jobdata.Prepared, nursery: trio.Nursery
    ) -> JobData:
        """Upload the chunks while trainers hear of the job, warm up and offer.

        Round 1 is pipelined (issue 17): the announcement needs only the prepared
        chunks, not their upload, so recruiting overlaps the upload; returns once both
        are done.
        """
        recruited = trio.Event()

        async def recruit() -> None:
            await self.recruiter.recruit(live)
            recruited.set()

        nursery.start_soon(recruit)
        data = await store_job(live, prepared, self.jobs, await self._get_store(),
                               self._prefix(live.job_id), encrypt=self.cfg.encrypt)
        await recruited.wait()
        return data

    async def _round(self, live: LiveJob, data: JobData, number: int) -> RoundOutcome:
        """Run round ``number`` until it closes, trying again after a failed attempt."""
        for attempt in range(1, self.cfg.round_attempts + 1):
            outcome = await self.rounds.run(live, data, number)
            if outcome.close is not None:
                return outcome
            log.warning(
                "job %s round %d attempt %d failed: %s", live.job_id, number, attempt, outcome.fail
            )
            await self._recover(live)
        raise RuntimeError(f"round {number} failed {self.cfg.round_attempts} times")

    async def _recover(self, live: LiveJob) -> None:
        """Before another try: forgive peers still present, wait for one to be available."""
        with trio.move_on_after(self.cfg.recruit_timeout_s):
            while True:
                present = set(self.node.live_peers())
                for peer, state in live.trainers.items():
                    if state == TrainerState.GONE and peer in present:
                        live.trainers[peer] = TrainerState.OFFERED
                if any(live.trainers.get(p) != TrainerState.GONE for p in live.pool):
                    return
                await trio.sleep(self.cfg.announce_interval_s)

    async def _get_store(self) -> Any:
        if self._store is None:
            self._store = await trio.to_thread.run_sync(self._open_store)
        return self._store

    def _prefix(self, job_id: str) -> str:
        return job_prefix(str(self.node.peer_id), job_id)
