"""Closing a round: aggregate, evaluate, store the model, record, publish, charge.

Every update the round saw becomes one row of the job store with its final
verdict, and every trainer whose update was checked is charged once, from that
verdict: ``accepted`` (or ``late``), ``outvoted`` or ``rejected``. Rejections made
while the round ran were charged by the round machine when they happened.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from protocols.job import assess, codec, compute, job_topic, jobdata
from protocols.job.codec import Kind
from protocols.job.owner.config import LiveJob, OwnerEnv
from protocols.job.owner.delta import store_delta
from protocols.job.owner.pay import pay_round
from protocols.job.owner.prepare import JobData, model_key, store_model
from protocols.job.owner.round import RoundOutcome
from protocols.job.owner.verify import Verifier
from protocols.job.ports import RoundRecord
from protocols.job.records import Phase, TrainerState, Update, Verdict
from storage.retry import call_store

if TYPE_CHECKING:
    from protocols.market.settle import RoundSettled

log = logging.getLogger("distro_train.owner")


class RoundCloser:
    """Turns a closed round into the next global model and its durable record."""

    def __init__(self, env: OwnerEnv) -> None:
        self.env = env
        self.node, self.jobs, self.stats = env.node, env.jobs, env.stats
        self.reputation = env.reputation
        self.verifier = Verifier(env)

    async def close(
        self, live: LiveJob, data: JobData, outcome: RoundOutcome, started: float
    ) -> bool:
        """Aggregate ``outcome``, advance ``data`` to the new model; True when the job is done."""
        live.phase = Phase.AGGREGATING
        spec, number = live.spec, live.round_no
        accepted, weights, result = await self._aggregate(live, data, outcome)
        live.past_updates.update(u.sha256 for u in outcome.updates)
        metrics = await trio.to_thread.run_sync(
            jobdata.metrics_on_test, data.prepared, result.model
        )
        loss, acc = jobdata.headline(metrics)
        parent = data.model_sha
        await self._advance(live, data, result.model)
        used = [u for u in accepted if u.verdict is Verdict.ACCEPTED and weights[_uid(u)]]
        # Only verified work of trainers never caught cheating is paid (docs/ledger.md).
        settled = await pay_round(self.env, live, number, used, parent=parent, model=data.model_sha,
                                  caught=[u for u in outcome.updates if u.reason == "cheated"])
        final = number == spec.rounds or bool(spec.target_accuracy and acc >= spec.target_accuracy)
        self.jobs.record_round(
            live.job_id,
            self._record(live, data, outcome, used, result, acc, loss, started, metrics),
        )
        self.stats.rounds_completed += 1
        self.stats.updates["aggregated", ""] += len(used)
        await self._publish(live, data, outcome, used, settled, (acc, loss), final)
        log.info(
            "job %s round %d: accuracy %.4f loss %.4f (%d updates)",
            live.job_id,
            number,
            acc,
            loss,
            len(used),
        )
        return final

    async def _aggregate(
        self, live: LiveJob, data: JobData, outcome: RoundOutcome
    ) -> tuple[list[Update], dict[str, int], assess.Aggregated]:
        """Aggregate the accepted updates, each weighted by the verifier; judge each once.

        Returns:
            (the accepted updates, each one's weight by id, the aggregation's result).
        """
        accepted = outcome.accepted
        removed = sum(1 for u in outcome.updates if u.verdict is Verdict.REJECTED)
        # Replica share and quarantine (docs/verification.md): weight 0 is kept out.
        weights = {_uid(u): self.verifier.weight(live, u) for u in accepted}
        result = await trio.to_thread.run_sync(
            assess.aggregate,
            data.prepared,
            live.spec,
            data.model,
            [(_uid(u), weights[_uid(u)], u.data) for u in accepted if weights[_uid(u)]],
            self.jobs.server_state(live.job_id),
            removed,
        )
        self._judge(live, accepted, result)
        for u in accepted:
            if not weights[_uid(u)] and u.verdict is Verdict.ACCEPTED:
                u.reason = "quarantined"  # valid and kept, but given no weight
        self.verifier.credit(live, accepted)
        return accepted, weights, result

    async def _publish(
        self,
        live: LiveJob,
        data: JobData,
        outcome: RoundOutcome,
        used: list[Update],
        settled: RoundSettled | None,
        score: tuple[float, float],
        final: bool,
    ) -> None:
        """Announce the round's result (``score``: accuracy, loss) on the job's topic."""
        body = codec.round_result(
            model_sha256=data.model_sha,
            used=[u.sha256 for u in used],
            rejected=[u.sha256 for u in outcome.updates if u.verdict is Verdict.REJECTED],
            accuracy=score[0],
            loss=score[1],
            final=final,
        )
        if settled is not None:
            body.updates_root, body.price = settled.root.hex(), str(settled.price)
        wire = codec.encode(
            self.node.private_key, Kind.ROUND, body, job_id=live.job_id, round=live.round_no
        )
        await self.node.publish(job_topic(live.job_id), wire)

    def _judge(self, live: LiveJob, accepted: list[Update], result: assess.Aggregated) -> None:
        """Set each accepted update's final verdict and charge its trainer once."""
        for u in accepted:
            uid = _uid(u)
            if uid in result.rejected:
                u.verdict, u.reason, outcome = Verdict.REJECTED, result.rejected[uid], "rejected"
                self.stats.updates["rejected", u.reason] += 1
            elif uid in result.outvoted:
                u.verdict, outcome = Verdict.OUTVOTED, "outvoted"
                self.stats.updates["outvoted", "round"] += 1
            else:
                u.verdict, outcome = Verdict.ACCEPTED, "late" if u.late else "accepted"
            u.data = b""
            live.trainers[u.peer] = TrainerState(str(u.verdict))
            self.reputation.charge(u.peer, outcome)

    async def _advance(self, live: LiveJob, data: JobData, model: bytes) -> None:
        store = await self.env.get_store()
        sha = compute.sha256(model)
        number = live.round_no
        name = live.job_key.blind(sha) if live.job_key else sha
        key = model_key(self.env.prefix(live.job_id), number, name)
        cipher_sha, size = await call_store(
            store_model, live.job_key, store, key, number, model, sha
        )
        data.model_delta = None
        if number < live.spec.rounds:  # a later round's trainers may fetch it
            data.model_delta = await call_store(
                store_delta, live.job_key, store, key, number, data.model, model, sha
            )
        data.model, data.model_key, data.model_sha = model, key, sha
        data.model_round, data.model_cipher_sha, data.model_stored_size = number, cipher_sha, size

    def _record(
        self,
        live: LiveJob,
        data: JobData,
        outcome: RoundOutcome,
        used: list[Update],
        result: assess.Aggregated,
        acc: float,
        loss: float,
        started: float,
        metrics: dict[str, float | str],
    ) -> RoundRecord:
        row = self.jobs.job(live.job_id)
        created_s = row.created_ms / 1000 if row else time.time()
        rejected = [u for u in outcome.updates if u.verdict is Verdict.REJECTED]
        return RoundRecord(
            round=live.round_no,
            seconds=time.time() - created_s,
            test_accuracy=acc,
            test_loss=loss,
            model_key=data.model_key,
            model_sha256=data.model_sha,
            updates=[u.row() for u in outcome.updates],
            reason=outcome.close.reason if outcome.close else "",
            server_state=result.server_state,
            detail={
                "metrics": metrics,
                "used_updates": [u.sha256 for u in used],
                "rejected_updates": [u.sha256 for u in rejected],
                "rejected_reasons": {u.sha256: u.reason for u in rejected},
                "trainers": sorted({u.peer for u in used}),
                "outvoted_updates": sorted(
                    u.sha256 for u in outcome.updates if u.verdict is Verdict.OUTVOTED
                ),
                # docs/verification.md: reproduced by a replica or the owner, and
                # kept with no weight (quarantined newcomers)
                "verified_updates": sorted(u.sha256 for u in used if u.verified),
                "quarantined_updates": sorted(
                    u.sha256 for u in outcome.updates if u.reason == "quarantined"
                ),
                "train_seconds": [round(u.train_seconds, 4) for u in outcome.accepted],
                "round_seconds": round(trio.current_time() - started, 4),
                "model_cipher_sha256": data.model_cipher_sha,
            },
        )


def _uid(u: Update) -> str:
    return f"{u.slot}:{u.peer}"
