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
- :meth:`Verifier.prefetch` starts the re-runs a round will need as soon as the
  owner knows them (round 1's before the round opens, while the chunks upload; a
  later round's when it opens), so the owner's own training runs beside the
  trainers' instead of after their updates arrive; ``compare`` takes the result.
- :meth:`Verifier.weight` is an accepted update's FedAvg weight (replica share,
  quarantine), and :meth:`Verifier.credit` counts verified contributions.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
from collections.abc import Iterable, Mapping, Sequence

import trio

from protocols.job import assess, compute, jobdata, rounds, verification
from protocols.job.owner.config import LiveJob, OwnerEnv
from protocols.job.owner.prepare import JobData
from protocols.job.ports import ChunkRow
from protocols.job.records import Compared, Update, Verdict

log = logging.getLogger("distro_train.owner")

RerunKey = tuple[str, int, int, str, tuple[tuple[int, int], ...]]
"""(job, round, slot, model sha256, the slot's chunks as (home slot, index)): a
re-run's identity, so a result is only reused for exactly the task it trained."""


def chunk_ids(rows: Iterable[ChunkRow]) -> tuple[tuple[int, int], ...]:
    """The chunks of a task's list, as :data:`RerunKey` names them."""
    return tuple((c.slot, c.idx) for c in rows)


class Verifier:
    """Redundancy, spot checks and quarantine for the owner's rounds."""

    def __init__(self, env: OwnerEnv) -> None:
        self.env, self.cfg = env, env.cfg
        self.rng = random.SystemRandom()
        self.reruns: dict[RerunKey, bytes] = {}
        self._running: dict[RerunKey, trio.Event] = {}
        self._queued: set[tuple[str, int, int]] = set()  # (job, round, slot) to prefetch
        # Re-runs are single-threaded; as many run at once as the owner has cores.
        self._cores = trio.CapacityLimiter(max(1, os.cpu_count() or 1))
        self.compute_s = 0.0  # seconds of the owner's own verification work

    def nonce(self, job_id: str, round: int, slot: int) -> bytes:
        """The nonce of ``slot``'s task in ``round`` (its replicas get the same)."""
        return verification.task_nonce(self.env.secret, job_id, round, slot)

    def plan(
        self, live: LiveJob, holders: Mapping[int, str], spares: list[str], ready: set[int]
    ) -> tuple[dict[int, str], set[int], set[str]]:
        """(replicas, spot-checked slots, probation peers) of a new round.

        Replicas are taken from the front of ``spares`` (removed from it); a redundant
        slot left without a spare is spot-checked instead. Probation draws first from
        the holders of ``ready`` slots, whose re-runs are already done or under way
        (:meth:`prefetch`): they were drawn at random too, so a trainer still cannot
        tell whether its task is checked.
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
        first = [p for s, p in sorted(holders.items()) if s in ready and p in quarantined]
        rest = [p for p in pool if p not in first]
        self.rng.shuffle(first)
        self.rng.shuffle(rest)
        probation = set([*first, *rest][: self.cfg.probation_checks])
        return replicas, spot, probation

    def needs_rerun(
        self, live: LiveJob, holders: Mapping[int, str], replicas: Mapping[int, str],
        spot: set[int], probation: set[str],
    ) -> list[int]:
        """The slots of a new round whose updates the owner will judge by its own re-run.

        As ``rounds.Round`` asks for them: spot-checked slots, probation peers' slots,
        and redundant slots with a quarantined holder or replica (``compare``).
        """
        quarantined = set(live.quarantine)
        return sorted(
            s for s, p in holders.items()
            if s in spot or p in probation or (s in replicas and {p, replicas[s]} & quarantined)
        )

    def round_one_slots(self, live: LiveJob, slots: int) -> list[int]:
        """The slots whose round-1 re-runs to start before the trainers are known.

        Every holder of a new job's round 1 is a newcomer unless this owner verified it
        before, and probation re-runs up to ``probation_checks`` of them: that many
        slots, drawn at random (``plan`` then puts their holders on probation first).
        None when this owner checks no newcomer's work.
        """
        if self.cfg.quarantine_contributions <= 0:
            return []
        n = min(slots, self.cfg.probation_checks)
        return sorted(self.rng.sample(range(slots), n))

    def start_round_one(
        self, live: LiveJob, prepared: jobdata.Prepared, nursery: trio.Nursery
    ) -> None:
        """Start the re-runs of a new job's round 1 in ``nursery`` now (issue 17).

        Round 1's holders are newcomers, and the owner judges their work by training
        their tasks itself. Those tasks are known before any trainer is: the initial
        model, each slot's own chunks and the nonces. Started as soon as the data is
        prepared, the re-runs overlap the escrow, the upload and recruiting rather
        than following the trainers' updates.
        """
        slots = self.round_one_slots(live, len(prepared.slots))
        if slots:
            initial = JobData(prepared, {}, prepared.initial, "", compute.sha256(prepared.initial))
            nursery.start_soon(self.prefetch, live, initial, 1, slots)

    async def prefetch(
        self, live: LiveJob, data: JobData, number: int, slots: Iterable[int],
        layout: Mapping[int, Sequence[ChunkRow]] | None = None,
    ) -> None:
        """Re-run ``slots``' tasks of round ``number`` now, ahead of their updates.

        ``data`` is as the round's tasks see it (``speeds.sized``) and ``layout`` the
        round's chunk lists (None: each slot's own chunks, in order). Failures are
        logged; :meth:`compare` then re-runs the task itself.
        """
        def samples(slot: int) -> int:
            if layout is not None:
                return sum(c.samples for c in layout[slot])
            return sum(n for _, n in data.prepared.slots[slot])

        # Largest first, as many at once as the owner has cores: the last to finish
        # is then a small one (the round waits for it).
        todo = sorted(slots, key=samples, reverse=True)
        self._queued |= {(live.job_id, number, s) for s in todo}

        async def worker() -> None:
            while todo:
                slot = todo.pop(0)
                ids = chunk_ids(layout[slot]) if layout is not None else tuple(
                    (slot, i) for i in range(len(data.prepared.slots[slot]))
                )
                try:
                    await self._prefetch_one(live, data, number, slot, ids)
                finally:
                    self._queued.discard((live.job_id, number, slot))

        async with trio.open_nursery() as nursery:
            for _ in range(min(len(todo), int(self._cores.total_tokens))):
                nursery.start_soon(worker)

    async def _prefetch_one(
        self, live: LiveJob, data: JobData, number: int, slot: int,
        ids: tuple[tuple[int, int], ...],
    ) -> None:
        try:
            await self._rerun(live, data, number, slot, ids)
        except Exception as exc:  # noqa: BLE001 - compare() re-runs the task itself
            log.warning("job %s round %d slot %d: early re-run failed: %r", live.job_id,
                        number, slot, exc)

    def ready(self, live: LiveJob, number: int) -> set[int]:
        """The slots of round ``number`` whose re-runs are done, under way or queued."""
        keys = {(k[0], k[1], k[2]) for k in (*self.reruns, *self._running)} | self._queued
        return {s for j, r, s in keys if j == live.job_id and r == number}

    def forget(self, job_id: str) -> None:
        """Drop ``job_id``'s kept re-runs (its job ended)."""
        self.reruns = {k: v for k, v in self.reruns.items() if k[0] != job_id}
        self._queued = {k for k in self._queued if k[0] != job_id}

    async def compare(
        self, live: LiveJob, data: JobData, number: int, a: rounds.Compare,
        updates: Mapping[str, Update], chunks: tuple[tuple[int, int], ...],
    ) -> Compared:
        """Judge ``a.peers``' updates of ``a.slot``; never raises.

        ``chunks`` are the chunks the slot's task carried, as :func:`chunk_ids` names
        them.
        """
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
                mine = await self._rerun(live, data, number, a.slot, chunks)
                figures = {p: await self._distance(live, data, mine, b) for p, b in got.items()}
                agreed, outliers, unsure = verification.against_rerun(
                    figures, tol, self.cfg.rerun_charge_above
                )
                if unsure:
                    # Off the owner's re-run, yet not by a cheat's margin: kept
                    # unverified, nobody charged for it.
                    log.info("job %s slot %d: unverified, off the re-run by %s", live.job_id,
                             a.slot, {p: f"{figures[p]:.3g}" for p in unsure})
                    for p in outliers:
                        live.cheaters[p] = "owner re-run"
                    return Compared(a.slot, (*agreed, *unsure), outliers, verified=False)
            else:
                pairs = {
                    (x, y): await self._distance(live, data, got[x], got[y])
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

    async def _distance(self, live: LiveJob, data: JobData, a: bytes, b: bytes) -> float:
        """Two updates' distance (``assess.replica_distance``), computed off the event loop."""
        return await trio.to_thread.run_sync(
            assess.replica_distance, data.prepared, data.model, a, b, live.spec
        )

    async def _rerun(
        self, live: LiveJob, data: JobData, number: int, slot: int,
        chunks: tuple[tuple[int, int], ...],
    ) -> bytes:
        key: RerunKey = (live.job_id, number, slot, data.model_sha, chunks)
        while key not in self.reruns:
            running = self._running.get(key)
            if running is not None:  # started early: take its result (or, failed, run it)
                await running.wait()
                continue
            done = self._running[key] = trio.Event()
            started = trio.current_time()
            stop = threading.Event()
            try:
                # Older rounds' re-runs of this job are of no more use.
                self.reruns = {
                    k: v for k, v in self.reruns.items() if k[0] != key[0] or k[1] >= number
                }
                # Cancellable: a cancelled job must not wait for a re-run to end.
                self.reruns[key] = await trio.to_thread.run_sync(
                    functools.partial(
                        assess.rerun, data.prepared, live.spec, data.model, slot,
                        self.nonce(live.job_id, number, slot), should_stop=stop.is_set,
                    ),
                    limiter=self._cores,
                    abandon_on_cancel=True,
                )
            finally:
                stop.set()  # an abandoned re-run ends at its next batch
                del self._running[key]
                done.set()
            log.debug("job %s round %d slot %d: re-run in %.2f s (%d chunks)", live.job_id,
                      number, slot, trio.current_time() - started, len(chunks))
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

