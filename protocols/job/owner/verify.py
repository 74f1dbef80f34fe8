"""Proof of useful work, the owner's side: plan checks, compare updates, quarantine.

The pure decisions are in ``protocols.job.verification`` and the round machine
(``rounds.Compare``); this part carries them out for the round runner and the
closer (docs/verification.md):

- :meth:`Verifier.plan` picks a round's redundant slots (their second holder is a
  spare), its spot-checked slots, and the quarantined holders the owner re-runs
  (probation), with ``random.SystemRandom``: nothing a trainer sees tells it.
- :meth:`Verifier.compare` answers a ``Compare``: the relative L2 distance of the
  updates' deltas, between replicas or against the owner's own re-run of the task
  (same chunks, same nonce, one thread), judged against ``replica_tolerance``.
- :meth:`Verifier.weight` is an accepted update's FedAvg weight (replica share,
  quarantine), and :meth:`Verifier.credit` counts verified contributions.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence

import trio

from protocols.job import assess, rounds, verification
from protocols.job.owner.config import LiveJob, OwnerEnv
from protocols.job.owner.prepare import JobData
from protocols.job.records import Compared, Update, Verdict

log = logging.getLogger("distro_train.owner")


class Verifier:
    """Redundancy, spot checks and quarantine for the owner's rounds."""

    def __init__(self, env: OwnerEnv) -> None:
        self.env, self.cfg = env, env.cfg
        self.rng = random.SystemRandom()
        self.reruns: dict[tuple[str, int, int, str], bytes] = {}
        self.compute_s = 0.0  # seconds of the owner's own verification work

    def nonce(self, job_id: str, round: int, slot: int) -> bytes:
        """The nonce of ``slot``'s task in ``round`` (its replicas get the same)."""
        return verification.task_nonce(self.env.secret, job_id, round, slot)

    def plan(
        self, live: LiveJob, holders: Mapping[int, str], spares: list[str]
    ) -> tuple[dict[int, str], set[int], set[str]]:
        """(replicas, spot-checked slots, probation peers) of a new round.

        Replicas are taken from the front of ``spares`` (removed from it); a redundant
        slot left without a spare is spot-checked instead.
        """
        chosen = verification.plan(
            sorted(holders), live.spec.redundancy, self.cfg.spot_check_rate, self.rng
        )
        replicas: dict[int, str] = {}
        spot = set(chosen.spot)
        for slot in sorted(chosen.redundant):
            if spares:
                replicas[slot] = spares.pop(0)
            else:
                spot.add(slot)
        everyone = set(holders.values()) | set(replicas.values()) | set(spares)
        needed = self.cfg.quarantine_contributions
        quarantined = verification.quarantined(everyone, self.env.verified, needed)
        live.quarantine = {
            p: f"{self.env.verified.get(p, 0)} of {needed} verified contributions"
            for p in sorted(quarantined)
        }
        pool = sorted(quarantined & set(holders.values()))
        probation = set(self.rng.sample(pool, min(len(pool), self.cfg.probation_checks)))
        return replicas, spot, probation

    async def compare(
        self, live: LiveJob, data: JobData, number: int, a: rounds.Compare,
        updates: Mapping[str, Update],
    ) -> Compared:
        """Judge ``a.peers``' updates of ``a.slot``; never raises."""
        got = {p: updates[p].data for p in a.peers if p in updates and updates[p].data}
        if len(got) != len(a.peers):
            return Compared(a.slot, tuple(got), (), verified=False)
        tol = self.cfg.replica_tolerance
        # A newcomer's work is judged by the owner's own re-run, never by replicas
        # alone: two fresh identities (one person's Sybils) would vouch for each other.
        by_owner = a.owner or any(p in live.quarantine for p in a.peers)
        started = trio.current_time()
        try:
            if by_owner:
                mine = await self._rerun(live, data, number, a.slot)
                reference = {
                    p: await trio.to_thread.run_sync(
                        assess.replica_distance, data.prepared, data.model, mine, b, live.spec
                    )
                    for p, b in got.items()
                }
                agreed, outliers, unsure = verification.against_rerun(
                    reference, tol, self.cfg.rerun_charge_above
                )
                figures = reference
                if unsure:
                    # Off the owner's re-run, yet not by a cheat's margin: kept
                    # unverified, nobody charged for it.
                    log.info("job %s slot %d: unverified, off the re-run by %s", live.job_id,
                             a.slot, {p: f"{reference[p]:.3g}" for p in unsure})
                    for p in outliers:
                        live.cheaters[p] = "owner re-run"
                    return Compared(a.slot, (*agreed, *unsure), outliers, verified=False)
            else:
                pairs = {
                    (x, y): await trio.to_thread.run_sync(
                        assess.replica_distance, data.prepared, data.model, got[x], got[y],
                        live.spec,
                    )
                    for i, x in enumerate(a.peers)
                    for y in a.peers[i + 1 :]
                }
                agreed, outliers = verification.judge(
                    a.peers, lambda x, y: pairs.get((x, y), pairs.get((y, x), 0.0)), tol
                )
                figures = {f"{x}~{y}": d for (x, y), d in pairs.items()}
        except Exception as exc:  # noqa: BLE001 - a comparison must never end the round
            log.warning("job %s slot %d: comparison failed: %r", live.job_id, a.slot, exc)
            return Compared(a.slot, tuple(got), (), verified=False)
        finally:
            self.compute_s += trio.current_time() - started
        log.info(
            "job %s round %d slot %d: %s comparison %s -> agreed %s, out of line %s",
            live.job_id, number, a.slot, "owner" if by_owner else "replica",
            {k: f"{v:.3g}" for k, v in figures.items()}, agreed, outliers,
        )
        for p in outliers:
            live.cheaters[p] = "owner re-run" if by_owner else "replica comparison"
        return Compared(a.slot, agreed, outliers)

    async def _rerun(self, live: LiveJob, data: JobData, number: int, slot: int) -> bytes:
        key = (live.job_id, number, slot, data.model_sha)
        if key not in self.reruns:
            self.reruns = {k: v for k, v in self.reruns.items() if k[:2] == key[:2]}
            self.reruns[key] = await trio.to_thread.run_sync(
                assess.rerun,
                data.prepared,
                live.spec,
                data.model,
                slot,
                self.nonce(live.job_id, number, slot),
            )
        return self.reruns[key]

    def weight(self, live: LiveJob, u: Update) -> int:
        """``u``'s FedAvg weight: 0 leaves it out (quarantined and unverified)."""
        w = verification.weight(
            u.samples,
            u.share,
            quarantined=u.peer in live.quarantine,
            verified=u.verified,
            quarantine_weight=self.cfg.quarantine_weight,
        )
        return 0 if w <= 0 else max(1, round(w))

    def credit(self, live: LiveJob, updates: Sequence[Update]) -> None:
        """Count each accepted and verified update as a contribution of its peer."""
        for u in updates:
            if u.verdict is Verdict.ACCEPTED and u.verified:
                self.env.verified[u.peer] += 1
                self.env.jobs.add_contribution(u.peer)
                if self.env.verified[u.peer] >= self.cfg.quarantine_contributions:
                    live.quarantine.pop(u.peer, None)

