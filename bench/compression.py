"""Update compression and model deltas against accuracy (issue 17; not a test).

    .venv/bin/python bench/compression.py [--rounds 5] [--limit 0] [--modes none,fp16,...]

The MNIST demo's task (``distro-train demo``: the 2NN 784-200-200-10, 4 trainers,
one local epoch, batch 32, lr 0.05, momentum 0.9, Dirichlet 0.5 split), run round by
round through the job protocol's own compute functions, without daemons: each
trainer's task is ``compute.train`` (with its nonce), its upload
``compute.compress_update`` (a residual per trainer, as a trainer keeps it), the
owner's check ``assess.check_update`` (which rebuilds the compressed update, then
validates it), its aggregation ``assess.aggregate`` and the test accuracy
``jobdata.evaluate``. Every mode starts from the same initial model and data.

One line per mode: bytes per update and per round (the updates, plus the model sent
to each trainer whole and as a delta against the previous round's), the final test
accuracy, and the ratios against ``none`` measured in the same run. Then the model
delta's size against the whole model (rounds 2 on, every delta checked to rebuild the
model bit for bit). ``--limit`` trains on fewer samples (then it is not the demo's
task and the lines say so).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocols.job import assess, compute, jobdata  # noqa: E402
from protocols.job.spec import JobSpec, from_mapping  # noqa: E402
from training import modeldelta  # noqa: E402

MODES = ("none", "fp16", "bf16", "int8", "topk")
DEMO = {
    "model": "mlp", "dataset": "mnist", "trainers": 4, "epochs": 1, "batch_size": 32,
    "lr": 0.05, "momentum": 0.9, "partition": "dirichlet", "alpha": 0.5,
}


@dataclass
class Run:
    """What one mode moved and reached."""

    mode: str
    update_bytes: list[int] = field(default_factory=list)
    model_bytes: list[int] = field(default_factory=list)  # whole, per trainer per round
    delta_bytes: list[int] = field(default_factory=list)  # as sent (delta or whole)
    delta_ratios: list[float] = field(default_factory=list)
    rejected: int = 0
    accuracy: float = 0.0

    @property
    def per_update(self) -> float:
        return sum(self.update_bytes) / max(1, len(self.update_bytes))

    def per_round(self, rounds: int, delta: bool) -> float:
        down = self.delta_bytes if delta else self.model_bytes
        return (sum(self.update_bytes) + sum(down)) / rounds


def run_mode(spec: JobSpec, prepared: jobdata.Prepared, rounds: int) -> Run:
    """Train ``rounds`` rounds of ``spec`` (its compression) from ``prepared``."""
    run = Run(spec.compression)
    model_json = json.dumps(prepared.model.to_mapping(), sort_keys=True)
    params = compute.train_params_json(spec)
    g, prev, state = prepared.initial, b"", None
    residual: dict[int, bytes] = {}
    for r in range(1, rounds + 1):
        sent = len(g)
        if prev:
            delta = modeldelta.encode(prev, g)
            if delta is not None and len(delta) < len(g):
                assert modeldelta.apply(prev, delta) == g  # lossless
                sent = len(delta)
            run.delta_ratios.append(sent / len(g))
        updates = []
        for slot, chunks in enumerate(prepared.slots):
            nonce = f"{r}/{slot}".encode()
            plain = compute.train(model_json, params, g, [b for b, _ in chunks], threads=0,
                                  should_stop=lambda: False, nonce=nonce).weights
            blob = plain
            if spec.compression != "none":
                blob, residual[slot] = compute.compress_update(
                    model_json, g, plain, spec.compression, spec.topk_fraction,
                    residual.get(slot, b""))
            run.update_bytes.append(len(blob))
            run.model_bytes.append(len(g))
            run.delta_bytes.append(sent)
            if assess.check_update(prepared, spec, g, blob):
                run.rejected += 1
                continue
            updates.append((f"{r}-{slot}", sum(n for _, n in chunks), blob))
        result = assess.aggregate(prepared, spec, g, updates, state)
        prev, g, state = g, result.model, result.server_state
    run.accuracy = jobdata.evaluate(prepared, g)[1]
    return run


def measure(rounds: int, limit: int, modes: tuple[str, ...], fraction: float) -> list[Run]:
    """Run every mode on the same prepared data."""
    base = from_mapping({**DEMO, "rounds": rounds, "limit": limit})
    prepared = jobdata.prepare(base)
    return [
        run_mode(from_mapping({**DEMO, "rounds": rounds, "limit": limit, "compression": m,
                               "topk_fraction": fraction}), prepared, rounds)
        for m in modes
    ]


def report(runs: list[Run], rounds: int, limit: int, fraction: float) -> list[str]:
    """One line per mode, ratios against ``none``, then the model delta's line."""
    task = "MNIST demo task" if not limit else f"MNIST 2NN on {limit} samples (not the demo's)"
    base = next((x for x in runs if x.mode == "none"), runs[0])
    lines = []
    for x in runs:
        lines.append(
            f"compression {x.mode:5s} ({task}, {rounds} rounds"
            f"{f', top-k {fraction:g}' if x.mode == 'topk' else ''}): "
            f"{x.per_update / 1e3:.1f} kB/update ({x.per_update / base.per_update:.3f}x none), "
            f"{x.per_round(rounds, True) / 1e6:.3f} MB/round with model deltas "
            f"({x.per_round(rounds, True) / base.per_round(rounds, False):.3f}x none without), "
            f"accuracy {x.accuracy:.4f} ({100 * (x.accuracy - base.accuracy):+.2f} pts vs none), "
            f"rejected {x.rejected}"
        )
    ratios = base.delta_ratios
    if ratios:
        lines.append(
            f"model_delta ({task}): the global model as a lossless delta is "
            f"{sum(ratios) / len(ratios):.3f}x the whole model on average over rounds 2-{rounds} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}; "
            f"whole model {base.model_bytes[0] / 1e3:.1f} kB)"
        )
    return lines


def main() -> None:
    """Parse flags, measure, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0, help="training samples (0: all 60,000)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--topk-fraction", type=float, default=0.01)
    args = ap.parse_args()
    modes = tuple(m for m in args.modes.split(",") if m)
    runs = measure(args.rounds, args.limit, modes, args.topk_fraction)
    for line in report(runs, args.rounds, args.limit, args.topk_fraction):
        print(line, flush=True)


def wan_checks(check: Any, rounds: int = 5, limit: int = 0) -> None:
    """bench/wan.py's two lines: ``compression`` and ``model_delta`` as checks.

    The demo's task, 5 rounds. compression passes when every lossy mode's update is
    at most its cap of a plain one's bytes (fp16/bf16 0.55x, int8 0.3x, top-k at 0.01
    0.05x) and its final accuracy is within 1 point of ``none``'s (top-k: 2 points);
    model_delta when the delta is smaller than the model in every round.
    """
    runs = measure(rounds, limit, MODES, 0.01)
    lines = report(runs, rounds, limit, 0.01)
    base = runs[0]
    caps = {"fp16": 0.55, "bf16": 0.55, "int8": 0.3, "topk": 0.05}
    ok = all(
        x.per_update <= caps[x.mode] * base.per_update
        and x.accuracy >= base.accuracy - (0.02 if x.mode == "topk" else 0.01)
        for x in runs[1:]
    )
    check("compression", ok, " | ".join(lines[:-1]))
    ratios = base.delta_ratios
    check("model_delta", bool(ratios) and max(ratios) < 1.0, lines[-1])


if __name__ == "__main__":
    main()
