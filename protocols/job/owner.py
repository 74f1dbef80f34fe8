"""The owner role: prepare a job's data, recruit trainers, drive rounds, aggregate.

Each running job is one task in the owner's nursery. The decisions are made by
pure code (``rounds.Round``, ``selection.select``); this module carries out their
actions over the network and the store, and records every completed round in the
job store in one transaction, so a restarted owner resumes from its last round.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import trio
from libp2p.peer.id import ID

from p2pnode.jobstore import ChunkRow, JobStore
from protocols.envelope import Opened, ReplayGuard, open_message, seal_message
from protocols.errors import EnvelopeError, SealError
from protocols.job import JOBS_TOPIC, compute, job_topic
from protocols.job.http import LazyClient
from protocols.job.owner_rounds import CONTENT_TYPE, RoundsMixin
from protocols.job.owner_state import LiveJob, OwnerConfig
from protocols.job.ports import NodeLike
from protocols.job.selection import OfferInfo, decayed, select, updated
from protocols.job.spec import JobSpec, loads
from protocols.pb import distro_pb2 as pb
from protocols.seal import unseal

log = logging.getLogger("distro_train.owner")


class Owner(RoundsMixin):
    """The owner behaviour of one daemon. Start with ``nursery.start(owner.run)``.

    Args:
        node: The daemon (see ``protocols.job.ports.NodeLike``).
        jobs: The daemon's job store.
        open_store: Returns the object store (blocking; called once, in a thread).
    """

    def __init__(
        self,
        node: NodeLike,
        jobs: JobStore,
        open_store: Callable[[], Any],
        cfg: OwnerConfig | None = None,
    ) -> None:
        self.node = node
        self.jobs = jobs
        self.open_store = open_store
        self.cfg = cfg or OwnerConfig()
        self.replay = ReplayGuard()
        self.live: dict[str, LiveJob] = {}
        self._store: Any = None
        self._nursery: trio.Nursery | None = None
        self._http = LazyClient()
        # Totals since start, for metrics: messages dropped by reason, updates by
        # (verdict, reason), rounds completed, update bytes fetched.
        self.dropped: Counter[str] = Counter()
        self.updates: Counter[tuple[str, str]] = Counter()
        self.rounds_completed = 0
        self.bytes_in = 0
        # A copy of the stored reputation, readable from other threads (metrics).
        self.scores: dict[str, tuple[float, int]] = jobs.reputation()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Resume unfinished jobs, then run submitted ones until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for row in self.jobs.jobs():
                    if row.state in ("preparing", "running"):
                        log.info("resuming job %s after round %d", row.job_id, row.completed_round)
                        self._start(row.job_id, loads(row.spec_json, fmt="json"))
                task_status.started()
                await trio.sleep_forever()
        finally:
            await self._http.aclose()

    # control-socket methods -------------------------------------------------

    async def submit(self, spec: JobSpec) -> str:
        """Record and start a job; returns its id."""
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
            "phase": live.phase if live else row.state,
            "round": live.round_no if live else row.completed_round,
            "completed_round": row.completed_round,
            "rounds": spec.rounds,
            "model": spec.model,
            "dataset": spec.dataset,
            "rule": spec.rule,
            "model_sha256": row.model_sha256,
            "error": row.error or (live.error if live else ""),
            "trainers": dict(live.trainers) if live else {},
            "offers": len(live.offers) if live else 0,
            "dropped": dict(live.dropped) if live else {},
            "history": history,
            "created_ms": row.created_ms,
        }
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
            }
            for r in self.jobs.jobs()
        ]

    async def result(self, job_id: str) -> dict[str, Any] | None:
        """The final (or latest) model's URL and hash, and the per-round metrics."""
        row = self.jobs.job(job_id)
        if row is None:
            return None
        url = None
        if row.model_key:
            store = await self._get_store()
            url = await trio.to_thread.run_sync(store.presign_get, row.model_key)
        return {
            "job_id": job_id,
            "state": row.state,
            "model_url": url,
            "model_sha256": row.model_sha256,
            "rounds": self.jobs.rounds(job_id),
            "spec": loads(row.spec_json, fmt="json").to_json(),
        }

    async def cancel(self, job_id: str) -> bool:
        """Stop a running job; False when it is not running."""
        live = self.live.get(job_id)
        row = self.jobs.job(job_id)
        if row is None or row.state not in ("preparing", "running"):
            return False
        if live is not None:
            live.scope.cancel()
        self.jobs.finish(job_id, "cancelled")
        wire = seal_message(
            self.node.private_key, "job.cancel", pb.JobCancel(reason="owner"), job_id=job_id
        )
        await self.node.publish(job_topic(job_id), wire)
        return True

    # requests from trainers -------------------------------------------------

    async def handle_offer(self, msg: Opened) -> pb.Ack:
        """A trainer offers itself for one of our jobs."""
        live = self.live.get(msg.job_id)
        if live is None or live.phase in ("done", "failed"):
            return pb.Ack(ok=False, reason="unknown_job")
        offer = msg.body
        assert isinstance(offer, pb.Offer)
        peer = msg.sender.to_base58()
        live.offers[peer] = OfferInfo(peer, offer.health, offer.free_slots, offer.cpu_count)
        live.keys[peer] = msg.public_key
        live.trainers.setdefault(peer, "offered")
        if live.rnd is not None and peer not in live.pool:
            live.pool.append(peer)
            self._feed(live, ("spare", peer))
        return pb.Ack(ok=True)

    async def handle_refusal(self, msg: Opened) -> pb.Ack:
        """A trainer gives up its task for a round (bad data, hash mismatch...)."""
        live = self.live.get(msg.job_id)
        if live is not None and msg.round == live.round_no:
            assert isinstance(msg.body, pb.Ack)
            log.info(
                "job %s round %d: %s refused: %s",
                msg.job_id,
                msg.round,
                msg.sender,
                msg.body.reason,
            )
            self._feed(live, ("refused", msg.sender.to_base58()))
        return pb.Ack(ok=True)

    # the job ----------------------------------------------------------------

    def _start(self, job_id: str, spec: JobSpec) -> None:
        live = LiveJob(job_id, spec)
        self.live[job_id] = live
        assert self._nursery is not None
        self._nursery.start_soon(self._run_job, live)

    async def _get_store(self) -> Any:
        if self._store is None:
            self._store = await trio.to_thread.run_sync(self.open_store)
        return self._store

    async def _run_job(self, live: LiveJob) -> None:
        try:
            with live.scope:
                await self._drive(live)
        except Exception as exc:  # noqa: BLE001 - task boundary: the job fails, the daemon lives
            log.exception("job %s failed", live.job_id)
            live.phase, live.error = "failed", repr(exc)
            self.jobs.finish(live.job_id, "failed", repr(exc)[:500])
        finally:
            live.rnd = None
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await self.node.unsubscribe(job_topic(live.job_id))

    async def _drive(self, live: LiveJob) -> None:
        spec, job_id = live.spec, live.job_id
        store = await self._get_store()
        prepared = await trio.to_thread.run_sync(compute.prepare, spec)
        live.prepared = prepared
        from storage.chunks import upload_chunks  # noqa: PLC0415 - boto3 only when needed
        from storage.store import job_prefix  # noqa: PLC0415

        prefix = job_prefix(str(self.node.peer_id), job_id)
        row = self.jobs.job(job_id)
        assert row is not None
        if row.state == "preparing":
            live.phase = "uploading"
            chunk_rows: list[ChunkRow] = []
            sent = [0, 0]  # uploaded, already stored

            def count(event: Any) -> None:
                sent[1 if event.skipped else 0] += 1

            for slot, items in enumerate(prepared.slots):
                manifest = await trio.to_thread.run_sync(upload_chunks, store, prefix, items, count)
                chunk_rows += [
                    ChunkRow(slot, i, e.key, e.sha256, e.size, e.samples)
                    for i, e in enumerate(manifest.entries)
                ]
            key = f"{prefix}models/0-{compute.sha256(prepared.initial)}.safetensors"
            await trio.to_thread.run_sync(store.put_bytes, key, prepared.initial, CONTENT_TYPE)
            self.jobs.set_prepared(job_id, chunk_rows, key, compute.sha256(prepared.initial))
            log.info(
                "job %s: data stored: %d chunks uploaded, %d already stored",
                job_id,
                sent[0],
                sent[1],
            )
            row = self.jobs.job(job_id)
            assert row is not None
        else:
            log.info(
                "job %s: resuming after round %d; data already stored", job_id, row.completed_round
            )
        slots: dict[int, list[ChunkRow]] = {}
        for c in self.jobs.chunks(job_id):
            slots.setdefault(c.slot, []).append(c)
        assert row.model_key and row.model_sha256
        model_key, model_sha = row.model_key, row.model_sha256
        model = await trio.to_thread.run_sync(store.get_bytes, model_key)
        if compute.sha256(model) != model_sha:
            raise RuntimeError(f"stored model {model_key} does not match its recorded hash")
        live.model = model
        self.node.subscribe(job_topic(job_id), self._topic_handler(live))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._announce_loop, live, prepared)
            await self._recruit(live)
            server_state = self.jobs.server_state(job_id)
            t0 = row.created_ms / 1000
            for r in range(row.completed_round + 1, spec.rounds + 1):
                round_started = trio.current_time()
                close = await self._round_with_retries(
                    live, r, slots, model_key, model_sha, len(model)
                )
                live.phase = "aggregating"
                updates = [(a.sha256, a.samples, a.data) for a in close]
                removed = len(self._round_rejected(live))
                new, server_state, outliers, outvoted = await trio.to_thread.run_sync(
                    compute.aggregate, prepared, spec, model, updates, server_state, removed
                )
                verdicts = {sha: "rejected" for sha in outliers} | {
                    sha: "outvoted" for sha in outvoted
                }
                for a in close:
                    if a.sha256 in verdicts:
                        # The Round charged "accepted" when the update passed its
                        # checks; the round-wide verdict replaces that charge.
                        self._charge(a.peer, verdicts[a.sha256], replaces="accepted")
                        live.trainers[a.peer] = verdicts[a.sha256]
                loss, acc = await trio.to_thread.run_sync(compute.evaluate, prepared, new)
                model, model_sha = new, compute.sha256(new)
                live.model = model
                model_key = f"{prefix}models/{r}-{model_sha}.safetensors"
                await trio.to_thread.run_sync(store.put_bytes, model_key, model, CONTENT_TYPE)
                used = [a.sha256 for a in close if a.sha256 not in verdicts]
                rejected = [*self._round_rejected(live), *outliers]
                rows = [
                    (a.sha256, a.peer, a.slot, a.samples, verdicts.get(a.sha256, "accepted"), "")
                    for a in close
                ]
                self.rounds_completed += 1
                for verdict in verdicts.values():
                    self.updates[verdict, "round"] += 1
                self.updates["aggregated", ""] += len(used)
                self.jobs.record_round(
                    job_id,
                    r,
                    seconds=time.time() - t0,
                    test_accuracy=acc,
                    test_loss=loss,
                    model_key=model_key,
                    model_sha256=model_sha,
                    updates=rows,
                    reason=live.rnd.close_reason if live.rnd else "",
                    server_state=server_state,
                    detail={
                        "used_updates": used,
                        "rejected_updates": rejected,
                        "trainers": sorted({a.peer for a in close if a.sha256 not in verdicts}),
                        "outvoted_updates": sorted(outvoted),
                        "train_seconds": [round(a.train_seconds, 4) for a in close],
                        "round_seconds": round(trio.current_time() - round_started, 4),
                    },
                )
                final = r == spec.rounds or (spec.target_accuracy and acc >= spec.target_accuracy)
                result = pb.RoundResult(
                    model_sha256=model_sha,
                    used_updates=used,
                    rejected_updates=rejected,
                    test_accuracy=acc,
                    test_loss=loss,
                    final=bool(final),
                )
                await self.node.publish(
                    job_topic(job_id),
                    seal_message(
                        self.node.private_key, "job.round", result, job_id=job_id, round=r
                    ),
                )
                log.info(
                    "job %s round %d: accuracy %.4f loss %.4f (%d updates)",
                    job_id,
                    r,
                    acc,
                    loss,
                    len(used),
                )
                if final:
                    break
            nursery.cancel_scope.cancel()
        live.phase = "done"
        self.jobs.finish(job_id, "done")

    def _round_rejected(self, live: LiveJob) -> list[str]:
        return list(live.rnd.rejected) if live.rnd is not None else []

    async def _announce_loop(self, live: LiveJob, prepared: compute.Prepared) -> None:
        spec = live.spec
        per_slot = max(sum(len(b) for b, _ in s) for s in prepared.slots)
        while True:
            ann = pb.JobAnnounce(
                model_name=spec.model,
                model_params_json=_json(prepared.model.to_mapping()),
                dataset=spec.dataset,
                samples=sum(n for s in prepared.slots for _, n in s),
                rounds=spec.rounds,
                trainers_wanted=spec.trainers,
                min_health=spec.min_health,
                max_chunk_bytes=max(len(b) for s in prepared.slots for b, _ in s),
                data_bytes_per_trainer=per_slot,
                topic=job_topic(live.job_id),
                train_params_json=compute.train_params_json(spec),
                expires_ms=int((time.time() + 60) * 1000),
            )
            wire = seal_message(self.node.private_key, "job.announce", ann, job_id=live.job_id)
            await self.node.publish(JOBS_TOPIC, wire)
            recruiting = live.phase in ("preparing", "uploading", "recruiting")
            await trio.sleep(self.cfg.announce_interval_s * (1 if recruiting else 5))

    async def _recruit(self, live: LiveJob) -> None:
        live.phase = "recruiting"
        spec = live.spec
        reputation = self._reputation()
        with trio.move_on_after(self.cfg.recruit_timeout_s):
            full_at: float | None = None
            seen, changed_at = 0, trio.current_time()
            while True:
                chosen, _ = select(
                    list(live.offers.values()),
                    reputation,
                    wanted=spec.trainers,
                    spares=spec.spares,
                    min_health=spec.min_health,
                    floor=self.cfg.reputation.floor,
                )
                now = trio.current_time()
                if len(live.offers) != seen:
                    seen, changed_at = len(live.offers), now
                if len(chosen) >= spec.trainers:
                    # Enough trainers; with spares wanted, collect offers a while longer.
                    full_at = full_at or now
                    if spec.spares == 0 or now >= full_at + spec.offer_window_s:
                        break
                elif chosen and now - changed_at >= self.cfg.recruit_patience_s:
                    break  # fewer than wanted and no new offer for a while: start anyway
                await trio.sleep(self.cfg.tick_s)
        chosen, spares = select(
            list(live.offers.values()),
            reputation,
            wanted=spec.trainers,
            spares=spec.spares + 64,
            min_health=spec.min_health,
            floor=self.cfg.reputation.floor,
        )
        if not chosen:
            raise RuntimeError(f"no trainer offered within {self.cfg.recruit_timeout_s}s")
        live.pool = chosen + spares
        for p in chosen:
            live.trainers[p] = "selected"
        log.info("job %s: selected %d trainers, %d spares", live.job_id, len(chosen), len(spares))

    def _dropped(self, live: LiveJob, reason: str) -> None:
        live.dropped[reason] = live.dropped.get(reason, 0) + 1
        self.dropped[reason] += 1

    def _feed(self, live: LiveJob, event: tuple[Any, ...]) -> None:
        if live.events is None:
            return
        try:
            live.events.send_nowait(event)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._dropped(live, "queue_full")

    def _topic_handler(self, live: LiveJob) -> Callable[[bytes, ID], Any]:
        async def on_message(data: bytes, from_peer: ID) -> None:
            try:
                msg = open_message(
                    data,
                    expected_kinds=frozenset({"job.update", "job.round", "job.cancel"}),
                    replay=self.replay,
                )
            except EnvelopeError as exc:
                self._dropped(live, exc.reason)
                if exc.reason in ("bad_signature", "replay") and exc.sender in live.offers:
                    self._charge(exc.sender, "forged")
                return
            if msg.kind != "job.update":
                return
            peer = msg.sender.to_base58()
            if msg.job_id != live.job_id or msg.round != live.round_no:
                self._dropped(live, "wrong_round")
                return
            note = msg.body
            assert isinstance(note, pb.UpdateAnnounce)
            try:
                url = unseal(
                    note.sealed_url,
                    self.node.private_key,
                    purpose="update-url",
                    job_id=live.job_id,
                    round=msg.round,
                ).decode()
            except (SealError, UnicodeDecodeError):
                self._dropped(live, "bad_seal")
                return
            live.trainers[peer] = "announced"
            self._feed(
                live, ("announced", peer, note.sha256, url, note.samples, note.train_seconds)
            )

        return on_message

    def _reputation(self) -> dict[str, float]:
        now = time.time()
        return {
            p: decayed(s, now - t / 1000, self.cfg.reputation) for p, (s, t) in self.scores.items()
        }

    def reputation_of(self, peer: str) -> float:
        """``peer``'s reputation now (decayed; 0 for a peer we never dealt with)."""
        score, at = self.scores.get(peer, (0.0, 0))
        return decayed(score, time.time() - at / 1000, self.cfg.reputation)

    def _charge(self, peer: str, outcome: str, replaces: str | None = None) -> None:
        now_ms = int(time.time() * 1000)
        score, at = self.scores.get(peer, (0.0, now_ms))
        if replaces is not None:
            score -= self.cfg.reputation.delta(replaces)
        new = updated(score, (now_ms - at) / 1000, outcome, self.cfg.reputation)
        self.jobs.set_reputation(peer, new, now_ms)
        self.scores[peer] = (new, now_ms)


def _json(value: Any) -> str:
    import json  # noqa: PLC0415

    return json.dumps(value, sort_keys=True)
