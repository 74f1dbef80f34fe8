"""Round overhead of the job protocol over real processes.

4 trainer daemons, an owner and a bootstrap node (separate OS processes) on an
embedded S3 server; logistic regression on digits for 10 rounds. For each round
after the first: the owner's wall time for the round minus the slowest accepted
trainer's local compute time (what a trainer reports for its training call). The
last line is the median: ``round_overhead_s=X`` (target <= 0.6).

    .venv/bin/python bench/round_overhead.py [--trainers 4] [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from localrun import run_job, start_storage

from p2pnode.commands.demo import launch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    procs, storage = start_storage("bench-rounds-")
    try:
        owner = launch(procs.work, procs, storage, args.trainers, say=lambda m: None).owner_dir
        spec = {
            "model": "logreg",
            "model_params": {"in_features": 64},
            "dataset": "digits",
            "trainers": args.trainers,
            "rounds": args.rounds,
            "epochs": 1,
            "lr": 0.1,
            "batch_size": 16,
            "partition": "iid",
            "chunk_samples": 400,
        }
        status = run_job(procs, owner, spec, timeout_s=60.0 * args.rounds + 120)
        if status["state"] != "done":
            print(f"job ended {status['state']}: {status.get('error')}", file=sys.stderr)
            return 1
        overheads = []
        print("round  wall_s  slowest_train_s  overhead_s  accuracy")
        for rec in status["history"]:
            wall, slowest = rec["round_seconds"], max(rec["train_seconds"])
            if rec["round"] > 1:  # round 1 also waits for trainers' first imports
                overheads.append(wall - slowest)
            print(
                f"{rec['round']:>5}  {wall:6.3f}  {slowest:15.3f}  {wall - slowest:10.3f}"
                f"  {rec['test_accuracy']:.4f}"
            )
        print(f"load average: {os.getloadavg()}")
        print(f"round_overhead_s={statistics.median(overheads):.3f}")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
