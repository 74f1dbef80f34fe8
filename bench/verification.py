"""Proof of useful work: replica distances, detection rates, overhead (not a test).

Runs the real training and comparison code in-process (``protocols.job.compute``,
``assess``, ``jobdata``, ``protocols.job.verification``) on one job, round after
round, with two cheaters holding slots: a lazy trainer (trains on 10% of its
chunk) and a copier (sends another slot's update). Each round the owner's plan
(``verification.plan``, with the default ``spot_check_rate`` and the bench job's
``redundancy``) decides which tasks are compared; a compared cheat is judged with
the default ``replica_tolerance`` against an honest replica or the owner's re-run,
exactly as the owner does.

Prints:

- the honest replica distance, p50/p99: two honest runs of one task on 1 and on 2
  torch threads (two machines rarely agree to the bit), and on 1 and 1 thread;
- each cheater's per-round detection rate at the default rates (measured: rounds in
  which its task was compared and judged out of line), and whether it was caught in
  the job (round 1 puts every newcomer on probation, so it is);
- what a *sleeper* keeps of its pay: a trainer honest while on probation, lazy in
  every later round (the lazy trainer's detections after probation stand for it).
  Receipts vest only when the job ends and a caught cheater is forfeited
  (docs/ledger.md), so it keeps nothing if any check catches it before the end;
  without forfeits it would have kept every round's pay up to its first catch;
- the verification compute (replica trainings, owner re-runs, distances) as a share
  of the job's training compute;

last line ``cheaters_caught=N/M verification_overhead=X``.

    .venv/bin/python bench/verification.py            # 40 rounds, 8 slots
    .venv/bin/python bench/verification.py --small    # 8 rounds, 4 slots
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from dataclasses import dataclass, field

from protocols.job import assess, compute, jobdata, verification
from protocols.job.owner.config import OwnerConfig
from protocols.job.spec import JobSpec, from_mapping
from training import chunks as chunk_codec

SECRET = b"bench"
LAZY_SLOT, COPY_SLOT = 0, 1


class Job:
    """The bench job, prepared once: train one slot's task, compare two updates."""

    def __init__(self, spec: JobSpec) -> None:
        self.prep = jobdata.prepare(spec)
        self.model_json = json.dumps(self.prep.model.to_mapping(), sort_keys=True)
        self.params = compute.train_params_json(spec)
        self.initial = self.prep.initial

    def train(self, slot: int, rnd: int, threads: int = 1, lazy: bool = False
              ) -> tuple[bytes, float]:
        """Slot ``slot``'s update in round ``rnd`` and its seconds (lazy: 10% of a chunk)."""
        blobs = [b for b, _ in self.prep.slots[slot]]
        if lazy:
            x, y = chunk_codec.decode_chunk(blobs[0])
            n = max(1, len(y) // 10)
            blobs = [chunk_codec.encode_chunk(x[:n], y[:n])]
        t = time.perf_counter()
        w = compute.train(self.model_json, self.params, self.initial, blobs, threads=threads,
                          should_stop=lambda: False,
                          nonce=verification.task_nonce(SECRET, "bench", rnd, slot)).weights
        return w, time.perf_counter() - t

    def dist(self, a: bytes, b: bytes) -> tuple[float, float]:
        """The replica distance of two updates, and its seconds."""
        t = time.perf_counter()
        d = assess.replica_distance(self.prep, self.initial, a, b)
        return d, time.perf_counter() - t


@dataclass
class Tally:
    """What the rounds measured."""

    honest_d: list[float] = field(default_factory=list)
    same_d: list[float] = field(default_factory=list)
    detected: dict[str, int] = field(default_factory=lambda: {"lazy": 0, "copier": 0})
    first_caught: dict[str, int] = field(default_factory=dict)  # after probation
    caught_in_job: dict[str, bool] = field(
        default_factory=lambda: {"lazy": False, "copier": False})
    job_s: float = 0.0
    verify_s: float = 0.0


def simulate(job: Job, spec: JobSpec, cfg: OwnerConfig, slots: int, rounds: int) -> Tally:
    """Run the job's rounds with the two cheaters, checking as the owner's plan says."""
    tally, rng = Tally(), random.SystemRandom()
    for rnd in range(1, rounds + 1):
        plan = verification.plan(list(range(slots)), spec.redundancy, cfg.spot_check_rate, rng)
        updates: dict[int, bytes] = {}
        for slot in range(slots):
            w, s = job.train(slot, rnd, lazy=slot == LAZY_SLOT)
            updates[slot], tally.job_s = w, tally.job_s + s
        updates[COPY_SLOT] = updates[COPY_SLOT + 1]  # the copier sends slot 2's bytes
        probation = rnd == 1  # every trainer is new in round 1: all re-run by the owner
        # Honest replica figures (not counted as verification): one honest slot a
        # round trained again on 2 threads (stands for another machine) and on 1.
        h = 2 + rnd % (slots - 2)
        tally.honest_d.append(job.dist(updates[h], job.train(h, rnd, threads=2)[0])[0])
        tally.same_d.append(job.dist(updates[h], job.train(h, rnd)[0])[0])
        for slot in range(slots):
            if not (slot in plan.redundant or slot in plan.spot or probation):
                continue
            # The twin: an honest replica (redundant) or the owner's re-run (checked),
            # one thread as the protocol asks; its cost is the verification's.
            twin, s = job.train(slot, rnd)
            d, ds = job.dist(updates[slot], twin)
            tally.verify_s += s + ds
            for name, cheat in (("lazy", LAZY_SLOT), ("copier", COPY_SLOT)):
                if slot == cheat and d > cfg.replica_tolerance:
                    tally.caught_in_job[name] = True
                    if not probation:
                        tally.detected[name] += 1
                        tally.first_caught.setdefault(name, rnd)
    return tally


def report(t: Tally, spec: JobSpec, cfg: OwnerConfig, slots: int, rounds: int) -> None:
    """Print the figures the module docstring lists."""
    checked_rounds = max(1, rounds - 1)
    q = statistics.quantiles(t.honest_d, n=100) if len(t.honest_d) >= 2 else t.honest_d * 99
    print(f"job: {slots} slots x {rounds} rounds, redundancy {spec.redundancy}, "
          f"spot_check_rate {cfg.spot_check_rate}, tolerance {cfg.replica_tolerance:g}")
    print(f"honest replica distance (1 vs 2 threads, n={len(t.honest_d)}): "
          f"p50={statistics.median(t.honest_d) if t.honest_d else 0:.3g} "
          f"p99={q[98] if q else 0:.3g} max={max(t.honest_d, default=0):.3g}")
    print(f"honest replica distance (1 vs 1 thread, n={len(t.same_d)}): "
          f"max={max(t.same_d, default=0):.3g}")
    expected = spec.redundancy + (1 - spec.redundancy) * cfg.spot_check_rate
    print("copier: an exact copy of another task's update is also caught every round by "
          "the hash-of-task check (identical bytes of two tasks: both re-run by the owner)")
    for name in t.detected:
        print(f"{name}: detected in {t.detected[name]}/{checked_rounds} rounds after probation "
              f"({t.detected[name] / checked_rounds:.2f}; plan's chance {expected:.2f}); "
              f"caught in the job: {t.caught_in_job[name]}")
    caught_at = t.first_caught.get("lazy")
    kept_before = (caught_at - 1) if caught_at else rounds
    chance = 1 - (1 - expected) ** checked_rounds
    print(f"sleeper (honest on probation, lazy after): caught after probation: "
          f"{caught_at is not None}{f' in round {caught_at}' if caught_at else ''}; pay kept "
          f"{0 if caught_at else rounds}/{rounds} rounds with forfeits, {kept_before}/{rounds} "
          f"without; chance of a catch in {checked_rounds} cheating rounds at these rates "
          f"{chance:.2f}")
    overhead = t.verify_s / t.job_s if t.job_s else 0.0
    print(f"training {t.job_s:.1f}s, verification {t.verify_s:.1f}s")
    print(f"cheaters_caught={sum(t.caught_in_job.values())}/{len(t.caught_in_job)} "
          f"verification_overhead={overhead:.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--redundancy", type=float, default=0.0,
                    help="the job's redundancy (default 0, the job spec's default)")
    args = ap.parse_args()
    slots, rounds = (4, 8) if args.small else (8, 40)
    spec = from_mapping({"model": "mlp", "dataset": "mnist", "trainers": slots,
                         "limit": 1000 * slots, "partition": "iid", "epochs": 1,
                         "rounds": rounds, "redundancy": args.redundancy})
    cfg = OwnerConfig()
    report(simulate(Job(spec), spec, cfg, slots, rounds), spec, cfg, slots, rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
