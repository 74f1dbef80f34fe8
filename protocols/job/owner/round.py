"""Running one round: assign the slots, take announcements, check updates, watch liveness.

The decisions belong to the pure ``rounds.Round``; this module feeds it typed
events and carries out its actions (send a task, check an update, charge a final
outcome). Decoding announcements and checking updates live in
``protocols.job.owner.arrivals``. Trainers' announcements and the owner's own task results share one
bounded queue: an announcement is dropped (``queue_full``) when the queue is full,
while the owner's own results wait for room, and trio hands a waiting sender the
first free place, so a flood never starves them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio
from libp2p.peer.id import ID

from protocols.envelope import ReplayGuard
from protocols.job import PROTOCOL_ID, codec, rounds
from protocols.job.codec import Kind
from protocols.job.owner.arrivals import RoundCtx, check_update, parse_announcement
from protocols.job.owner.config import LiveJob, OwnerEnv
from protocols.job.owner.prepare import JobData
from protocols.job.owner.speeds import SpeedBook, samples, sized
from protocols.job.owner.verify import Verifier, chunk_ids
from protocols.job.records import (
    Announced,
    Checked,
    Gone,
    Phase,
    Refused,
    RoundEvent,
    TrainerState,
    Update,
    Verdict,
)
from protocols.pb import distro_pb2 as pb
from protocols.seal import seal
from storage.store import DEFAULT_CONTENT_TYPE

log = logging.getLogger("distro_train.owner")


@dataclass
class RoundOutcome:
    """How a round ended: ``close`` (aggregate it) or ``fail`` (a reason), and every update."""

    close: rounds.Close | None
    fail: str
    updates: list[Update]

    @property
    def accepted(self) -> list[Update]:
        """The updates the round machine accepted, in slot order."""
        if self.close is None:
            return []
        by_key = {u.key: u for u in self.updates}
        out = []
        for a in self.close.accepted:
            u = by_key[(a.peer, a.slot)]
            u.late, u.verified, u.share = a.late, a.verified, a.share
            out.append(u)
        return out


class RoundRunner:
    """Runs rounds of the owner's jobs and decodes their topics' announcements."""

    def __init__(self, env: OwnerEnv) -> None:
        self.env = env
        self.node, self.cfg, self.stats = env.node, env.cfg, env.stats
        self.reputation = env.reputation
        self.replay = ReplayGuard()
        self._inbox: dict[str, trio.MemorySendChannel[RoundEvent]] = {}
        self.verifier = Verifier(env)
        self.speeds = SpeedBook(env.jobs, env.cfg)

    async def run(self, live: LiveJob, data: JobData, number: int) -> RoundOutcome:
        """Run round ``number`` of ``live`` once, until it closes or fails."""
        live.phase, live.round_no = Phase.TRAINING, number
        new = self._new_round(live, data, number)
        if new is None:
            return RoundOutcome(None, "no_trainers", [])
        rnd, reruns = new
        store = await self.env.get_store()
        expiry = int(live.spec.round_deadline_s + self.cfg.url_grace_s)
        url = await trio.to_thread.run_sync(store.presign_get, data.model_key, expiry)
        send, recv = trio.open_memory_channel[RoundEvent](self.cfg.events)
        ctx = RoundCtx(live, data, number, url, expiry, send)
        live.rnd, self._inbox[live.job_id] = rnd, send
        try:
            end = await self._loop(ctx, rnd, recv, reruns)
        finally:
            live.rnd = None
            self._inbox.pop(live.job_id, None)
            self.speeds.end_round(live)
        updates = list(ctx.updates.values())
        for u in updates:  # caught by a comparison: the update is out (docs/verification.md)
            if u.peer in rnd.cheaters and u.verdict is not Verdict.REJECTED:
                u.verdict, u.reason, u.data = Verdict.REJECTED, "cheated", b""
        if isinstance(end, rounds.Fail):
            return RoundOutcome(None, end.reason, updates)
        return RoundOutcome(end, "", updates)

    def _new_round(
        self, live: LiveJob, data: JobData, number: int
    ) -> tuple[rounds.Round, list[int]] | None:
        """The round's machine, and the slots the owner will re-run itself."""
        forgive_heard(live, self.node.last_heard)
        rep = self.reputation.view()
        floor = self.cfg.reputation.floor
        alive = [
            p
            for p in live.pool
            if live.trainers.get(p) != TrainerState.GONE and rep.get(p, 0.0) >= floor
        ]
        alive.sort(key=lambda p: -rep.get(p, 0.0))  # stable: ties keep selection order
        holders = _sticky(sorted(data.slots), alive, live.holders)
        if not holders:
            return None
        live.holders = dict(holders)
        spares = alive[len(holders) :]
        size = data.model_stored_size or len(data.model)
        layout = self.speeds.layout(live, data.slots, holders, size)
        # A holder sized to no sample sits the round out and keeps its slot (docs/jobs.md).
        holders = {s: p for s, p in holders.items() if layout.get(s)} or holders
        deadline = live.spec.round_deadline_s
        ready = self.verifier.ready(live, number)
        replicas, spot, probation = self.verifier.plan(live, holders, spares, ready)
        reruns = self.verifier.needs_rerun(live, holders, replicas, spot, probation)
        return rounds.Round(
            number,
            holders,
            spares,
            quorum=min(live.spec.quorum_count, len(holders)),
            min_updates=1,
            deadline_s=deadline,
            backup_after_s=self.cfg.backup_fraction * deadline,
            now=trio.current_time(),
            replicas=replicas,
            spot=spot,
            probation=probation,
        ), reruns

    async def _loop(
        self, ctx: RoundCtx, rnd: rounds.Round, recv: trio.MemoryReceiveChannel[RoundEvent],
        reruns: list[int],
    ) -> rounds.Close | rounds.Fail:
        async with trio.open_nursery() as nursery:
            end = self._act(nursery, ctx, rnd.start())
            # The owner's own re-runs train beside the trainers, not after them.
            data = sized(ctx.data, ctx.live.layout)
            nursery.start_soon(
                self.verifier.prefetch, ctx.live, data, ctx.number, reruns, ctx.live.layout
            )
            while end is None:
                event = None
                with trio.move_on_after(self.cfg.tick_s):
                    event = await recv.receive()
                now = trio.current_time()
                actions = rnd.feed(self._note(ctx, event), now) if event else []
                actions += self._liveness(ctx.live, rnd, now) + rnd.tick(now)
                end = self._act(nursery, ctx, actions)
            nursery.cancel_scope.cancel()
        return end

    def _note(self, ctx: RoundCtx, event: RoundEvent) -> RoundEvent:
        """Keep the owner's view of each trainer in step with ``event``."""
        trainers = ctx.live.trainers
        if isinstance(event, Announced):
            ctx.announced[event.update.peer] = event.update
            u = event.update
            self.speeds.announced(ctx.live, u.peer, u.train_seconds, trio.current_time())
            trainers[event.update.peer] = TrainerState.ANNOUNCED
        elif isinstance(event, Checked) and event.update.verdict is Verdict.REJECTED:
            trainers[event.update.peer] = TrainerState.REJECTED
        elif isinstance(event, Checked):
            self.speeds.finished(ctx.live, event.update.peer, event.update.slot)
        elif isinstance(event, Refused):
            trainers[event.peer] = TrainerState.REFUSED
        elif isinstance(event, Gone):
            trainers[event.peer] = TrainerState.GONE
        return event

    def _liveness(self, live: LiveJob, rnd: rounds.Round, now: float) -> list[rounds.Action]:
        alive = set(self.node.live_peers())
        live.seen_alive |= alive & set(live.pool)
        actions: list[rounds.Action] = []
        for peer in rnd.pending_peers():
            if peer in live.seen_alive and peer not in alive:
                live.trainers[peer] = TrainerState.GONE
                actions += rnd.gone(peer, now)
        return actions

    def _act(
        self, nursery: trio.Nursery, ctx: RoundCtx, actions: list[rounds.Action]
    ) -> rounds.Close | rounds.Fail | None:
        for a in actions:
            if isinstance(a, rounds.SendTask):
                ctx.live.trainers[a.peer] = TrainerState.ASSIGNED
                nursery.start_soon(self._send_task, ctx, a)
            elif isinstance(a, rounds.CheckUpdate):
                update = ctx.announced.pop(a.peer)
                update.slot, update.samples = a.slot, samples(ctx.live, a.slot)
                ctx.updates[update.key] = update
                nursery.start_soon(check_update, self.env, ctx, update)
            elif isinstance(a, rounds.Compare):
                nursery.start_soon(self._compare, ctx, a)
            elif isinstance(a, rounds.Charge):
                self.reputation.charge(a.peer, a.outcome)
            else:
                return a
        return None

    async def _compare(self, ctx: RoundCtx, a: rounds.Compare) -> None:
        updates = {p: ctx.updates[(p, a.slot)] for p in a.peers if (p, a.slot) in ctx.updates}
        data = sized(ctx.data, ctx.live.layout)  # the chunks this round's tasks carried
        chunks = chunk_ids(ctx.live.layout.get(a.slot, ()))
        await ctx.send.send(
            await self.verifier.compare(ctx.live, data, ctx.number, a, updates, chunks)
        )

    async def _send_task(self, ctx: RoundCtx, a: rounds.SendTask) -> None:
        live = ctx.live
        try:
            task = await self._task(ctx, a)
            sealed = seal(
                task.SerializeToString(),
                live.keys[a.peer],
                purpose="task",
                job_id=live.job_id,
                round=ctx.number,
            )
            wire = codec.encode(
                self.node.private_key,
                Kind.ASSIGN,
                pb.Assign(sealed_task=sealed),
                job_id=live.job_id,
                round=ctx.number,
            )
            peer_id = ID.from_base58(a.peer)
            timeout = self.cfg.request_timeout_s
            with trio.fail_after(timeout):
                reply = await self.node.request(peer_id, PROTOCOL_ID, wire, timeout)
            ack = codec.decode(reply, frozenset({Kind.ACK}), sender=peer_id).body
        except Exception as exc:  # noqa: BLE001 - any failure to reach a trainer means "gone"
            log.info(
                "job %s round %d: assigning slot %d to %s failed: %r",
                live.job_id,
                ctx.number,
                a.slot,
                a.peer,
                exc,
            )
            live.assign_failed[a.peer] = time.monotonic()
            await ctx.send.send(Gone(a.peer))
            return
        assert isinstance(ack, pb.Ack)
        if ack.ok:
            live.trainers[a.peer] = TrainerState.TRAINING
            size = ctx.data.model_stored_size or len(ctx.data.model)
            self.speeds.started(live, a.peer, a.slot, size, trio.current_time())
        else:
            log.info("job %s: %s refused slot %d: %s", live.job_id, a.peer, a.slot, ack.reason)
            await ctx.send.send(Refused(a.peer))

    async def _task(self, ctx: RoundCtx, a: rounds.SendTask) -> pb.Task:
        store = await self.env.get_store()
        key = (
            f"{self.env.prefix(ctx.live.job_id)}updates/{ctx.number}/{a.slot}-{a.peer}.safetensors"
        )
        deadline_ms = int((time.time() + ctx.live.spec.round_deadline_s) * 1000)

        job_key, data, spec = ctx.live.job_key, ctx.data, ctx.live.spec

        def presign() -> pb.Task:
            target = store.presign_upload(
                key, max_bytes=self.cfg.max_update_bytes, expires_s=ctx.expiry_s
            )
            ctx.unenforced[(a.peer, a.slot)] = "" if target.size_enforced else key
            task = pb.Task(
                model_url=ctx.model_url,
                model_sha256=data.model_sha,
                model_bytes=len(data.model),
                chunks=[
                    pb.Chunk(
                        url=store.presign_get(c.key, ctx.expiry_s),
                        sha256=c.sha256,
                        size=c.size,
                        samples=c.samples,
                        # Only this slot's chunks' keys: nothing opens another slot's.
                        key=job_key.chunk_key(c.sha256) if job_key else b"",
                        cipher_sha256=c.cipher_sha256,
                        cipher_size=c.cipher_size,
                    )
                    for c in ctx.live.layout[a.slot]
                ],
                upload_url=target.url,
                upload_fields=dict(target.fields),
                upload_content_type=DEFAULT_CONTENT_TYPE,
                update_get_url=store.presign_get(key, ctx.expiry_s),
                deadline_ms=deadline_ms,
                nonce=self.verifier.nonce(ctx.live.job_id, ctx.number, a.slot),
                deterministic=ctx.live.spec.redundancy > 0,
                compression="" if spec.compression == "none" else spec.compression,
                topk_fraction=spec.topk_fraction if spec.compression == "topk" else 0.0,
            )
            if data.model_delta is not None:
                task.model_delta_url = store.presign_get(data.model_delta.key, ctx.expiry_s)
                task.model_delta_sha256 = data.model_delta.sha256
                task.model_delta_bytes = data.model_delta.size
                task.model_base_sha256 = data.model_delta.base_sha256
            if job_key is not None:
                task.model_key = job_key.model_key(data.model_round, data.model_sha)
                task.model_cipher_sha256 = data.model_cipher_sha
                task.model_cipher_bytes = data.model_stored_size
                task.model_round = data.model_round
                task.encrypt_update = True
            return task

        task = await trio.to_thread.run_sync(presign)
        ctx.issued[(a.peer, a.slot)] = task.update_get_url
        return task

    def feed(self, live: LiveJob, event: RoundEvent) -> None:
        """Queue an event that came from a peer for ``live``'s running round, if any."""
        inbox = self._inbox.get(live.job_id)
        if inbox is None:
            return
        try:
            inbox.send_nowait(event)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._drop(live, "queue_full")

    def refused(self, live: LiveJob, peer: str) -> None:
        """``peer`` gave up its task; only a peer holding a slot can."""
        if live.rnd is not None and peer in live.rnd.pending_peers():
            self.feed(live, Refused(peer))

    def _drop(self, live: LiveJob, reason: str) -> None:
        live.dropped[reason] += 1
        self.stats.dropped[reason] += 1

    def on_topic(self, live: LiveJob) -> Callable[[bytes, ID], Awaitable[None]]:
        """The handler of ``live``'s topic: verified update announcements feed its round."""

        async def on_message(data: bytes, from_peer: ID) -> None:
            got = parse_announcement(live, data, self.replay, self.node.private_key)
            if isinstance(got, str):
                if got:
                    self._drop(live, got)
            else:
                self.feed(live, Announced(got))

        return on_message


def _sticky(slots: list[int], ranked: list[str], previous: dict[int, str]) -> dict[int, str]:
    """Give the first ``len(slots)`` of ``ranked`` the slots, each its previous one if any.

    Who holds a slot is decided by rank, as before; which slot a holder gets stays the
    one it held last round when it can, so the trainer finds that slot's chunks in its
    chunk cache (protocols/job/chunkcache.py) and downloads none of them again.
    """
    chosen = ranked[: len(slots)]
    holders = {s: previous[s] for s in slots if previous.get(s) in chosen}
    rest = [p for p in chosen if p not in holders.values()]
    for s in slots:
        if s not in holders and rest:
            holders[s] = rest.pop(0)
    return dict(sorted(holders.items()))


def forgive_heard(live: LiveJob, last_heard: Callable[[str], float | None]) -> None:
    """Offer a slot again to trainers whose assignment failed but who spoke since.

    A failed assignment (a reset stream, a request timed out under load) marks its
    trainer gone. One whose presence arrived after the failure is still there, so the
    next round may pick it again; a killed one stays in the presence table until its
    silence times out but is never heard again, so it stays out.
    """
    for peer, failed_at in list(live.assign_failed.items()):
        heard = last_heard(peer)
        if heard is not None and heard > failed_at:
            del live.assign_failed[peer]
            if live.trainers.get(peer) == TrainerState.GONE:
                live.trainers[peer] = TrainerState.OFFERED
