"""Recruiting trainers: announce the job, take offers, select trainers and spares.

Offers are bounded per job (``max_offers``) and spares per job (``max_spares``); a
spare gets nothing but a place in the pool until a round hands it a slot, so
offering never reveals any of the owner's data.
"""

from __future__ import annotations

import json
import logging
import time

import trio
from libp2p.peer.id import ID

from protocols.envelope import Opened
from protocols.job import JOBS_TOPIC, PROTOCOL_ID, codec, compute, job_topic, jobdata
from protocols.job.codec import Kind
from protocols.job.owner.config import LiveJob, OwnerEnv
from protocols.job.records import Phase, SpareJoined, TrainerState
from protocols.job.selection import OfferInfo, select
from protocols.pb import distro_pb2 as pb

log = logging.getLogger("distro_train.owner")

RECRUITING = (Phase.PREPARING, Phase.UPLOADING, Phase.RECRUITING)


class Recruiter:
    """Announces jobs and turns offers into each job's pool of trainers."""

    def __init__(self, env: OwnerEnv) -> None:
        self.node, self.cfg, self.reputation = env.node, env.cfg, env.reputation
        self.market = env.market

    async def announce_forever(self, live: LiveJob, prepared: jobdata.Prepared) -> None:
        """Publish ``live``'s announcement now and then until cancelled."""
        while True:
            body = self.announcement(live, prepared)
            await self.node.publish(
                JOBS_TOPIC,
                codec.encode(self.node.private_key, Kind.ANNOUNCE, body, job_id=live.job_id),
            )
            slow = 1 if live.phase in RECRUITING else 5
            await trio.sleep(self.cfg.announce_interval_s * slow)

    async def announce_preparing(self, live: LiveJob) -> None:
        """Publish once that ``live`` is being prepared, so trainers warm up meanwhile.

        Preparing the data takes the owner seconds (loading, splitting, chunking),
        and a trainer's first task waits for torch to load (seconds more). This
        announcement carries what the spec alone says; trainers never offer for it
        (``preparing``), and one that would likely take the job loads torch now.
        """
        body = self._from_spec(live)
        body.preparing = True
        try:
            await self.node.publish(
                JOBS_TOPIC, codec.encode(self.node.private_key, Kind.ANNOUNCE, body,
                                         job_id=live.job_id),
            )
        except trio.TooSlowError:  # only a head start: the job goes on without it
            log.info("job %s: the preparing announcement was not published in time",
                     live.job_id)

    def announcement(self, live: LiveJob, prepared: jobdata.Prepared) -> pb.JobAnnounce:
        """What trainers learn about the job before they offer."""
        body = self._from_spec(live)
        sizes = [len(b) for s in prepared.slots for b, _ in s]
        body.model_params_json = json.dumps(prepared.model.to_mapping(), sort_keys=True)
        body.samples = sum(n for s in prepared.slots for _, n in s)
        body.max_chunk_bytes = max(sizes)
        body.data_bytes_per_trainer = self._most_per_task(live, prepared)
        return body

    def _from_spec(self, live: LiveJob) -> pb.JobAnnounce:
        """The announcement's fields that the spec alone gives."""
        spec = live.spec
        return pb.JobAnnounce(
            model_name=spec.model,
            dataset=spec.dataset,
            rounds=spec.rounds,
            trainers_wanted=spec.trainers,
            min_health=spec.min_health,
            topic=job_topic(live.job_id),
            train_params_json=compute.train_params_json(spec),
            expires_ms=int((time.time() + self.cfg.announce_ttl_s) * 1000),
            **(self.market.announce_fields(spec.price) if self.market else {}),
        )

    def _most_per_task(self, live: LiveJob, prepared: jobdata.Prepared) -> int:
        """The most chunk bytes one task may bring (sized shares reach ``shares_max``)."""
        per_slot = [sum(len(b) for b, _ in s) for s in prepared.slots]
        if live.spec.shares != "sized" or len(per_slot) < 2:
            return max(per_slot)
        largest = max((len(b) for s in prepared.slots for b, _ in s), default=0)
        sized = self.cfg.shares_max * sum(per_slot) / len(per_slot) + largest
        return int(min(sum(per_slot), max(max(per_slot), sized)))

    def take_offer(self, live: LiveJob, msg: Opened) -> tuple[pb.Ack, SpareJoined | None]:
        """Record a verified offer; returns the answer and, mid-job, a spare for the round."""
        try:
            note = codec.parse_offer(msg)
        except codec.BodyError as exc:
            return codec.ack(False, exc.reason), None
        peer = msg.sender.to_base58()
        if peer not in live.offers and len(live.offers) >= self.cfg.max_offers:
            return codec.ack(False, "full"), None
        address = ""
        if live.spec.price.paid:
            from ledger.wallet import verify_binding  # only paid jobs bind a wallet

            if not verify_binding(peer, note.wallet_address, note.wallet_binding):
                return codec.ack(False, "bad_wallet_binding"), None
            if note.ask > live.spec.price.max_price:
                return codec.ack(False, "ask_too_high"), None
            address = note.wallet_address
        live.offers[peer] = OfferInfo(peer, note.health, note.free_slots, note.cpu_count,
                                      note.ask, address)
        live.keys[peer] = msg.public_key
        live.trainers.setdefault(peer, TrainerState.OFFERED)
        joined = None
        spares = len(live.pool) - live.spec.trainers
        if live.rnd is not None and peer not in live.pool and spares < self.cfg.max_spares:
            live.pool.append(peer)
            joined = SpareJoined(peer)
        return codec.ack(True), joined

    async def recruit(self, live: LiveJob) -> None:
        """Wait for enough offers (or patience to run out), then fill ``live.pool``.

        Raises:
            RuntimeError: no trainer offered within ``recruit_timeout_s``.
        """
        live.phase = Phase.RECRUITING
        spec = live.spec
        with trio.move_on_after(self.cfg.recruit_timeout_s):
            full_at: float | None = None
            seen, changed_at = 0, trio.current_time()
            while True:
                chosen, _ = self._select(live, spec.spares)
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
        chosen, spares = self._select(live, spec.spares + self.cfg.max_spares)
        if not chosen:
            raise RuntimeError(f"no trainer offered within {self.cfg.recruit_timeout_s}s")
        live.pool = chosen + spares[: self.cfg.max_spares]
        for p in chosen:
            live.trainers[p] = TrainerState.SELECTED
        log.info("job %s: selected %d trainers, %d spares", live.job_id, len(chosen), len(spares))

    def _select(self, live: LiveJob, spares: int) -> tuple[list[str], list[str]]:
        return select(
            list(live.offers.values()),
            self.reputation.view(),
            wanted=live.spec.trainers,
            spares=spares,
            min_health=live.spec.min_health,
            floor=self.cfg.reputation.floor,
            max_price=live.spec.price.max_price if live.spec.price.paid else 0,
        )

    async def tell_cancelled(self, live: LiveJob) -> None:
        """Tell every trainer of ``live``'s pool that the job is cancelled.

        Each gets a signed ``job.cancel`` request (``trainerjobs.cancel_job``): it
        stops its task and forgets the job's residual and base model. Best effort,
        all at once, within one ``request_timeout_s``.
        """
        timeout = self.cfg.request_timeout_s

        async def tell(peer: str) -> None:
            wire = codec.encode(self.node.private_key, Kind.CANCEL, codec.cancel("owner"),
                                job_id=live.job_id)
            try:
                await self.node.request(ID.from_base58(peer), PROTOCOL_ID, wire, timeout)
            except Exception as exc:  # noqa: BLE001 - an unreachable trainer learns at its deadline
                log.info("job %s: could not tell %s it is cancelled: %r", live.job_id, peer, exc)

        with trio.move_on_after(timeout):
            async with trio.open_nursery() as nursery:
                for peer in live.pool:
                    nursery.start_soon(tell, peer)
