"""The owner's rounds: carry out the actions of the pure ``rounds.Round`` machine.

A mixin of ``Owner`` (kept apart so each file stays readable): it sends tasks
sealed to each trainer, fetches and validates announced updates, watches liveness,
and feeds every outcome back to the machine until it closes or fails the round.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import trio
from libp2p.peer.id import ID

from p2pnode.jobstore import ChunkRow
from protocols.envelope import open_message, seal_message
from protocols.job import PROTOCOL_ID, compute
from protocols.job import rounds as rd
from protocols.job.http import LazyClient
from protocols.job.owner_state import Got, LiveJob, OwnerConfig, RoundCtx
from protocols.job.ports import NodeLike
from protocols.pb import distro_pb2 as pb
from protocols.seal import seal

log = logging.getLogger("distro_train.owner")
CONTENT_TYPE = "application/octet-stream"


class RoundsMixin:
    """Round execution for ``Owner``; uses the attributes and helpers declared here."""

    cfg: OwnerConfig
    node: NodeLike
    bytes_in: int
    updates: Counter[tuple[str, str]]
    _http: LazyClient

    if TYPE_CHECKING:

        async def _get_store(self) -> Any: ...

        def _charge(self, peer: str, outcome: str, replaces: str | None = None) -> None: ...

        def _feed(self, live: LiveJob, event: tuple[Any, ...]) -> None: ...

        def _reputation(self) -> dict[str, float]: ...

    async def _round_with_retries(
        self,
        live: LiveJob,
        r: int,
        slots: dict[int, list[ChunkRow]],
        model_key: str,
        model_sha: str,
        model_size: int,
    ) -> list[Got]:
        for attempt in range(1, self.cfg.round_attempts + 1):
            outcome = await self._round(live, r, slots, model_key, model_sha, model_size)
            if isinstance(outcome, list):
                return outcome
            log.warning("job %s round %d attempt %d failed: %s", live.job_id, r, attempt, outcome)
            await self._recover(live)
        raise RuntimeError(f"round {r} failed {self.cfg.round_attempts} times")

    async def _recover(self, live: LiveJob) -> None:
        """Prepare another try of a failed round.

        Peers still present are forgiven (they may only have been slow to answer),
        and we wait until some trainer of the pool is available again.
        """
        with trio.move_on_after(self.cfg.recruit_timeout_s):
            while True:
                present = set(self.node.live_peers())
                for peer, state in live.trainers.items():
                    if state == "gone" and peer in present:
                        live.trainers[peer] = "offered"
                if any(live.trainers.get(p) != "gone" for p in live.pool):
                    return
                await trio.sleep(self.cfg.announce_interval_s)

    async def _round(
        self,
        live: LiveJob,
        r: int,
        slots: dict[int, list[ChunkRow]],
        model_key: str,
        model_sha: str,
        model_size: int,
    ) -> list[Got] | str:
        spec, store = live.spec, await self._get_store()
        live.phase, live.round_no = "training", r
        rep = self._reputation()
        floor = self.cfg.reputation.floor
        alive = [p for p in live.pool if live.trainers.get(p) != "gone" and rep.get(p, 0) >= floor]
        alive.sort(key=lambda p: -rep.get(p, 0.0))  # stable: ties keep selection order
        holders = {s: p for s, p in zip(sorted(slots), alive, strict=False)}
        if not holders:
            return "no_trainers"
        spares = alive[len(holders) :]
        quorum = min(spec.quorum_count, len(holders))
        rnd = rd.Round(
            r,
            holders,
            spares,
            quorum=quorum,
            min_updates=1,
            deadline_s=spec.round_deadline_s,
            backup_after_s=self.cfg.backup_fraction * spec.round_deadline_s,
            now=trio.current_time(),
        )
        send, recv = trio.open_memory_channel[tuple[Any, ...]](self.cfg.events)
        live.rnd, live.events, live.issued = rnd, send, {}
        model_url = await trio.to_thread.run_sync(
            store.presign_get, model_key, self.cfg.url_expiry_s
        )
        got: dict[str, Got] = {}
        ctx = RoundCtx(live, r, slots, model_url, model_sha, model_size, got)
        async with trio.open_nursery() as nursery:
            outcome = self._act(nursery, ctx, rnd.start())
            while outcome is None:
                event = None
                with trio.move_on_after(self.cfg.tick_s):
                    event = await recv.receive()
                now = trio.current_time()
                actions = self._apply(rnd, ctx, event, now) if event else []
                actions += self._liveness(live, rnd, now) + rnd.tick(now)
                outcome = self._act(nursery, ctx, actions)
            nursery.cancel_scope.cancel()
        live.events = None
        if isinstance(outcome, rd.Fail):
            return outcome.reason
        for a in outcome.accepted:
            live.trainers[a.peer] = "accepted"
        return [got[a.sha256] for a in outcome.accepted]

    def _apply(
        self, rnd: rd.Round, ctx: RoundCtx, ev: tuple[Any, ...], now: float
    ) -> list[rd.Action]:
        kind, peer = ev[0], ev[1]
        if kind == "announced":
            _, _, sha, url, samples, train_s = ev
            ctx.announced[(peer, sha)] = (url, samples)
            ctx.train_seconds[sha] = float(train_s)
            return rnd.announced(peer, sha)
        if kind == "checked":
            _, _, slot, sha, ok = ev
            if not ok:
                ctx.live.trainers[peer] = "rejected"
            return rnd.checked(peer, slot, sha, ok, now)
        if kind == "refused":
            ctx.live.trainers[peer] = "refused"
            return rnd.refused(peer, now)
        if kind == "gone":
            ctx.live.trainers[peer] = "gone"
            return rnd.gone(peer, now)
        if kind == "spare":
            return rnd.add_spare(peer)
        return []

    def _liveness(self, live: LiveJob, rnd: rd.Round, now: float) -> list[rd.Action]:
        alive = set(self.node.live_peers())
        live.seen_alive |= alive & set(live.pool)
        actions: list[rd.Action] = []
        for peer in rnd.pending_peers():
            if peer in live.seen_alive and peer not in alive:
                live.trainers[peer] = "gone"
                actions += rnd.gone(peer, now)
        return actions

    def _act(
        self, nursery: trio.Nursery, ctx: RoundCtx, actions: list[rd.Action]
    ) -> rd.Close | rd.Fail | None:
        for a in actions:
            if isinstance(a, rd.SendTask):
                ctx.live.trainers[a.peer] = "assigned"
                nursery.start_soon(self._send_task, ctx, a)
            elif isinstance(a, rd.CheckUpdate):
                nursery.start_soon(self._check, ctx, a)
            elif isinstance(a, rd.Charge):
                self._charge(a.peer, a.outcome)
            else:
                return a
        return None

    async def _send_task(self, ctx: RoundCtx, a: rd.SendTask) -> None:
        from storage.store import job_prefix  # noqa: PLC0415

        live, store = ctx.live, await self._get_store()
        prefix = job_prefix(str(self.node.peer_id), live.job_id)
        key = f"{prefix}updates/{ctx.round}/{a.slot}-{a.peer}.safetensors"
        expiry = self.cfg.url_expiry_s

        def presign() -> pb.Task:
            return pb.Task(
                model_url=ctx.model_url,
                model_sha256=ctx.model_sha,
                model_bytes=ctx.model_size,
                chunks=[
                    pb.Chunk(
                        url=store.presign_get(c.key, expiry),
                        sha256=c.sha256,
                        size=c.size,
                        samples=c.samples,
                    )
                    for c in ctx.slots[a.slot]
                ],
                upload_url=store.presign_put(key, CONTENT_TYPE, expiry),
                upload_content_type=CONTENT_TYPE,
                update_get_url=store.presign_get(key, expiry),
                deadline_ms=int((time.time() + live.spec.round_deadline_s) * 1000),
            )

        task = await trio.to_thread.run_sync(presign)
        live.issued[(a.peer, a.slot)] = task.update_get_url
        try:
            sealed = seal(
                task.SerializeToString(),
                live.keys[a.peer],
                purpose="task",
                job_id=live.job_id,
                round=ctx.round,
            )
            wire = seal_message(
                self.node.private_key,
                "job.assign",
                pb.Assign(sealed_task=sealed),
                job_id=live.job_id,
                round=ctx.round,
            )
            peer_id = ID.from_base58(a.peer)
            with trio.fail_after(self.cfg.request_timeout_s):
                reply = await self.node.request(
                    peer_id, PROTOCOL_ID, wire, self.cfg.request_timeout_s
                )
            ack = open_message(
                reply, expected_kinds=frozenset({"job.ack"}), expected_sender=peer_id
            )
        except Exception as exc:  # noqa: BLE001 - any failure to reach a trainer means "gone"
            log.info(
                "job %s round %d: assigning slot %d to %s failed: %r",
                live.job_id,
                ctx.round,
                a.slot,
                a.peer,
                exc,
            )
            self._feed(live, ("gone", a.peer))
            return
        assert isinstance(ack.body, pb.Ack)
        if ack.body.ok:
            live.trainers[a.peer] = "training"
        else:
            log.info("job %s: %s refused slot %d: %s", live.job_id, a.peer, a.slot, ack.body.reason)
            self._feed(live, ("refused", a.peer))

    async def _check(self, ctx: RoundCtx, a: rd.CheckUpdate) -> None:
        from storage import transfer  # noqa: PLC0415
        from storage.errors import TransferError  # noqa: PLC0415

        live = ctx.live
        url, samples = ctx.announced.get((a.peer, a.sha256), ("", 0))
        ok, reason = False, "wrong_url"
        if url and url == live.issued.get((a.peer, a.slot)):
            try:
                data = await transfer.fetch(
                    url,
                    sha256=a.sha256,
                    max_bytes=self.cfg.max_update_bytes,
                    client=self._http.get(),
                )
                assert live.prepared is not None
                ok, reason = await trio.to_thread.run_sync(
                    compute.check_update, live.prepared, live.spec, live.model, data
                )
            except TransferError as exc:
                ok, reason, data = False, compute.reason_of(exc), b""
            except ValueError as exc:
                ok, reason, data = False, f"bad_sha256: {exc}", b""
            except Exception as exc:  # noqa: BLE001 - a peer's bytes must never end the round
                log.warning("job %s: checking update %s failed: %r", live.job_id, a.sha256, exc)
                ok, reason, data = False, "error", b""
            self.bytes_in += len(data)
            if ok:
                ctx.got[a.sha256] = Got(
                    a.peer, a.slot, a.sha256, int(samples), data, ctx.train_seconds.get(a.sha256, 0)
                )
        self.updates["checked" if ok else "rejected", "" if ok else reason.split(":")[0]] += 1
        if not ok:
            log.info(
                "job %s round %d: update %s from %s rejected: %s",
                live.job_id,
                ctx.round,
                a.sha256[:12],
                a.peer,
                reason,
            )
        self._feed(live, ("checked", a.peer, a.slot, a.sha256, ok))
