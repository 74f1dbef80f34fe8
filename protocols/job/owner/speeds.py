"""What the owner learns of each trainer's speed, and the chunks each slot gets.

The round runner tells the book when a trainer accepted a task (:meth:`started`),
when its update was announced (:meth:`announced`) and when that update passed its
checks (:meth:`finished`). From those the book makes one ``sizing.Observation`` per
finished task: the owner's own clock times the task, the owner's own counts give
its samples and bytes, and the trainer's signed ``train_seconds`` only splits the
measured time into training and moving bytes, bounded by it (``sizing.speed_of``).
A rejected update teaches nothing. A peer's first task is the probe on first
contact: it sizes the next round (``shares_min_tasks`` 1), though it may include a
cold start (an empty chunk cache, counted in its bytes; a torch import not yet
finished), so it stands only until a second replaces it; later ones are averaged in.
Figures are per job (a trainer's throughput depends on the model) and kept in the
job store (``speeds``), so a restarted owner still sizes by them.

:meth:`layout` sizes the slots of a new round with ``sizing.plan``: the held slots
share the chunks they held last round between them; a slot with no holder keeps
its own. A held slot sized to no chunk sits the round out (its holder keeps the slot
and stays in the pool; the round runner sends it no task); only a holder whose last
``shares_sit_out_tasks`` finished tasks each say so may (:meth:`_may_sit_out`). docs/jobs.md ("Sized
shares") has the design.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from protocols.job import sizing
from protocols.job.owner.config import LiveJob, OwnerConfig
from protocols.job.owner.prepare import JobData
from protocols.job.ports import ChunkRow, JobStoreLike

log = logging.getLogger("distro_train.owner")

Layout = dict[int, tuple[ChunkRow, ...]]
MAX_JOBS = 64
"""Jobs whose figures memory keeps (the oldest forgotten first; the job store has all)."""


class SpeedBook:
    """Each job's trainer speeds (durable) and the chunks of each slot this round."""

    def __init__(self, jobs: JobStoreLike, cfg: OwnerConfig) -> None:
        self.jobs = jobs
        self.limits = sizing.Limits(
            min_share=cfg.shares_min, max_share=cfg.shares_max, min_gain=cfg.shares_min_gain,
            min_gain_s=cfg.shares_min_gain_s,
        )
        self.min_tasks = cfg.shares_min_tasks
        self.sit_out_tasks = cfg.shares_sit_out_tasks
        self.reprobe_rounds = cfg.shares_reprobe_rounds
        self._speeds: dict[str, dict[str, tuple[sizing.Speed, int]]] = {}
        self._held: dict[str, dict[str, set[str]]] = {}  # job -> peer -> chunk sha256s
        self._tasks: dict[tuple[str, str, int], tuple[float, float, float]] = {}
        self._announced: dict[tuple[str, str], tuple[float, float]] = {}
        # job -> peer -> its last shares_sit_out_tasks figures, unblended (memory only)
        self._recent: dict[str, dict[str, list[sizing.Speed]]] = {}
        self._benched: dict[str, dict[str, int]] = {}  # job -> peer -> rounds sat out in a row

    def speeds(self, job_id: str) -> dict[str, tuple[sizing.Speed, int]]:
        """``peer -> (speed, finished tasks)`` of ``job_id`` (loaded on first use)."""
        if job_id not in self._speeds:
            while len(self._speeds) >= MAX_JOBS:
                self.forget(next(iter(self._speeds)))
            self._speeds[job_id] = {
                p: (sizing.Speed(s, b), n) for p, (s, b, n) in self.jobs.speeds(job_id).items()
            }
        return self._speeds[job_id]

    def started(self, live: LiveJob, peer: str, slot: int, model_bytes: int, now: float) -> None:
        """``peer`` accepted ``slot``'s task at ``now``."""
        chunks = live.layout.get(slot, ())
        while live.job_id not in self._held and len(self._held) >= MAX_JOBS:
            self.forget(next(iter(self._held)))
        held = self._held.setdefault(live.job_id, {}).setdefault(peer, set())
        fresh = sum(c.cipher_size or c.size for c in chunks if c.sha256 not in held)
        held.update(c.sha256 for c in chunks)
        work = sum(c.samples for c in chunks) * max(1, live.spec.epochs)
        # Bytes moved: the model down, the chunks it did not hold, an update the
        # size of the model up (a compressed one is smaller: a conservative count).
        self._tasks[(live.job_id, peer, slot)] = (now, work, 2 * model_bytes + fresh)

    def announced(self, live: LiveJob, peer: str, train_seconds: float, now: float) -> None:
        """``peer``'s update of this round was announced at ``now``."""
        self._announced[(live.job_id, peer)] = (now, train_seconds)

    def finished(self, live: LiveJob, peer: str, slot: int) -> None:
        """``peer``'s update for ``slot`` passed its checks: learn from its timing."""
        task = self._tasks.pop((live.job_id, peer, slot), None)
        seen = self._announced.pop((live.job_id, peer), None)
        if task is None or seen is None:
            return
        (t0, work, moved), (t1, claim) = task, seen
        speed = sizing.speed_of(sizing.Observation(work, moved, t1 - t0, claim), self.limits)
        if speed is None:
            return
        log.info("job %s round %d: %s's task took %.2f s (claims %.2f s training) for "
                 "%d sample-epochs and %d bytes: %.0f samples/s, %.0f bytes/s", live.job_id,
                 live.round_no, peer, t1 - t0, claim, work, moved, speed.samples_per_s,
                 speed.bytes_per_s)
        while live.job_id not in self._recent and len(self._recent) >= MAX_JOBS:
            self.forget(next(iter(self._recent)))
        recent = self._recent.setdefault(live.job_id, {}).setdefault(peer, [])
        recent.append(speed)
        del recent[: -max(1, self.sit_out_tasks)]
        book = self.speeds(live.job_id)
        old, n = book.get(peer, (None, 0))
        new = sizing.blend(old if n >= 2 else None, speed)
        book[peer] = (new, n + 1)
        self.jobs.set_speed(live.job_id, peer, new.samples_per_s, new.bytes_per_s, n + 1)

    def end_round(self, live: LiveJob) -> None:
        """Forget the round's unfinished timings."""
        self._tasks = {k: v for k, v in self._tasks.items() if k[0] != live.job_id}
        self._announced = {k: v for k, v in self._announced.items() if k[0] != live.job_id}

    def forget(self, job_id: str) -> None:
        """Drop what memory holds of a finished job (the job store keeps its figures)."""
        self._speeds.pop(job_id, None)
        self._held.pop(job_id, None)
        self._recent.pop(job_id, None)
        self._benched.pop(job_id, None)
        self._tasks = {k: v for k, v in self._tasks.items() if k[0] != job_id}
        self._announced = {k: v for k, v in self._announced.items() if k[0] != job_id}

    def layout(
        self, live: LiveJob, home: Mapping[int, Sequence[ChunkRow]], holders: Mapping[int, str],
        model_bytes: int,
    ) -> Layout:
        """Set and return ``live.layout``: each slot's chunks for a new round.

        With ``shares = "equal"`` every slot keeps its own chunks (``home``).
        """
        full: Layout = {s: tuple(cs) for s, cs in sorted(home.items())}
        book = self.speeds(live.job_id)
        if live.spec.shares != "sized":
            live.layout = full
            live.shares = _report(live, None, holders, book)
            return full
        full.update({s: cs for s, cs in live.layout.items() if s in full})
        known = {p: s for p, (s, n) in book.items() if n >= self.min_tasks}
        current = {s: full[s] for s in holders if s in full}
        speeds = {s: known.get(p) for s, p in holders.items()}
        kw: dict[str, Any] = {"epochs": live.spec.epochs, "fixed_bytes": 2 * model_bytes,
                              "limits": self.limits}
        out = self._may_sit_out(live.job_id, current, speeds, holders, kw)
        plan = sizing.plan(current, speeds, may_sit_out=out, **kw)
        benched = self._benched.setdefault(live.job_id, {})
        for slot, peer in holders.items():
            benched[peer] = benched.get(peer, 0) + 1 if not plan.layout.get(slot) else 0
        full.update(plan.layout)
        live.layout = full
        live.shares = _report(live, plan, holders, book)
        log.info("job %s round %d: shares %s", live.job_id, live.round_no, plan.explain())
        return full


    def _may_sit_out(
        self, job_id: str, current: Mapping[int, Sequence[ChunkRow]],
        speeds: Mapping[int, sizing.Speed | None], holders: Mapping[int, str],
        kw: dict[str, Any],
    ) -> list[int]:
        """Slots whose holders would sit out even by the best of their recent figures.

        Each of the holder's last ``shares_sit_out_tasks`` tasks must say so: the plan
        is made again with, for those holders, the fastest throughput and link speed
        any of those tasks showed. One cold start or one bad round cannot bench a
        trainer, which, benched, is not measured again: after
        ``shares_reprobe_rounds`` rounds out in a row it gets a share to measure it.
        """
        recent, need = self._recent.get(job_id, {}), max(1, self.sit_out_tasks)
        benched = self._benched.get(job_id, {})
        best, candidates = dict(speeds), []
        for slot, peer in holders.items():
            figures = recent.get(peer, [])
            if len(figures) >= need and benched.get(peer, 0) < max(1, self.reprobe_rounds):
                best[slot] = sizing.Speed(max(f.samples_per_s for f in figures),
                                          max(f.bytes_per_s for f in figures))
                candidates.append(slot)
        if not candidates:
            return []
        again = sizing.plan(current, best, may_sit_out=candidates, **kw)
        return [s for s in candidates if again.targets.get(s) == 0]


def sized(data: JobData, layout: Mapping[int, Sequence[ChunkRow]]) -> JobData:
    """``data`` as the round's tasks see it: each slot's prepared chunks per ``layout``.

    What the owner's re-runs and replica comparisons read (owner/verify.py), so they
    train exactly the chunk list a slot's task carried. A shallow view: no chunk is
    copied.
    """
    p = data.prepared
    slots = [[p.slots[c.slot][c.idx] for c in layout.get(s, ())] for s in range(len(p.slots))]
    return dataclasses.replace(data, prepared=dataclasses.replace(p, slots=slots))


def samples(live: LiveJob, slot: int) -> int:
    """The owner's own count of ``slot``'s training samples this round (FedAvg weight)."""
    return sum(c.samples for c in live.layout.get(slot, ()))


def _report(
    live: LiveJob,
    plan: sizing.Plan[ChunkRow] | None,
    holders: Mapping[int, str],
    book: Mapping[str, tuple[sizing.Speed, int]],
) -> dict[str, Any]:
    """What ``jobs.status`` shows of this round's shares and why."""
    predicted = plan.predicted_s if plan is not None else {}
    return {
        "mode": live.spec.shares,
        "round": live.round_no,
        "plan": plan.reason if plan is not None else "equal",
        "predicted_round_s": round(plan.makespan_s, 3) if plan and predicted else None,
        "slots": {
            str(s): {
                "peer": p,
                "samples": sum(c.samples for c in live.layout.get(s, ())),
                "predicted_s": round(predicted[s], 3) if s in predicted else None,
            }
            for s, p in sorted(holders.items())
        },
        "speeds": {
            p: {"samples_per_s": round(sp.samples_per_s, 3),
                "bytes_per_s": round(sp.bytes_per_s, 1), "tasks": n}
            for p, (sp, n) in sorted(book.items())
        },
    }
