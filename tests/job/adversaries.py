"""Adversarial trainers, for tests and bench/scenarios.py only (never a production flag).

Each is a ``Trainer`` subclass that does the honest work and then cheats in one way.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from typing import Any

from protocols.job.trainer import Trainer
from training import chunks as chunk_codec
from training import weights
from training.local import TrainResult
from training.models import ModelSpec


def _spec(job: Any) -> ModelSpec:
    return ModelSpec.from_mapping(json.loads(job.announce.model_params_json))


def _delta_scaled(job: Any, model: bytes, result: TrainResult, factor: float) -> TrainResult:
    spec = _spec(job)
    g, w = weights.decode(model, spec), weights.decode(result.weights, spec)
    bad = {k: g[k] + factor * (w[k] - g[k]) for k in g}
    return TrainResult(weights=weights.encode(bad), metrics=result.metrics)


class SignFlip(Trainer):
    """Sends the honest update multiplied by -10."""

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        honest = await super().train_task(job, model, chunks, stop)
        return _delta_scaled(job, model, honest, -10.0)


class GaussianNoise(Trainer):
    """Sends the global model plus large Gaussian noise."""

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        import torch

        honest = await super().train_task(job, model, chunks, stop)
        spec = _spec(job)
        g = weights.decode(model, spec)
        gen = torch.Generator().manual_seed(1)
        noisy = {k: v + 3.0 * torch.randn(v.shape, generator=gen) for k, v in g.items()}
        return TrainResult(weights=weights.encode(noisy), metrics=honest.metrics)


class LabelFlip(Trainer):
    """Trains honestly on its chunks with every label y replaced by (classes - 1 - y)."""

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        classes = int(_spec(job).classes)
        flipped = []
        for c in chunks:
            x, y = chunk_codec.decode_chunk(c)
            flipped.append(chunk_codec.encode_chunk(x, (classes - 1 - y)))
        return await super().train_task(job, model, flipped, stop)


class Replayer(Trainer):
    """Keeps its first update and sends it again in every later round."""

    first: TrainResult | None = None

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        honest = await super().train_task(job, model, chunks, stop)
        if self.first is None:
            self.first = honest
        return self.first


class Straggler(Trainer):
    """Honest, but takes ``DELAY_S`` longer than it should for every task, and claims
    perfect health so that owners pick it first.
    """

    DELAY_S = 20.0

    def offer_for(self, msg: Any) -> Any:
        offer = super().offer_for(msg)
        offer.health = 100.0
        return offer

    async def train_task(self, job: Any, model: bytes, chunks: list[bytes],
                         stop: threading.Event) -> TrainResult:
        import trio

        result = await super().train_task(job, model, chunks, stop)
        await trio.sleep(self.DELAY_S)
        return result


class Freeloader(Trainer):
    """Does no work: returns the global model as it came, with plausible metrics."""

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        honest = await super().train_task(job, model, chunks, stop)
        return TrainResult(weights=model, metrics=honest.metrics)


class SampleLiar(Trainer):
    """Trains honestly but claims 2**64 - 1 samples, to own the FedAvg average."""

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        honest = await super().train_task(job, model, chunks, stop)
        lie = dataclasses.replace(honest.metrics, samples=2**64 - 1)
        return TrainResult(weights=honest.weights, metrics=lie)


class Copycat(Trainer):
    """A Sybil: every copy returns the same bytes (the global model nudged by 1e-3)."""

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        honest = await super().train_task(job, model, chunks, stop)
        g = weights.decode(model, _spec(job))
        return TrainResult(
            weights=weights.encode({k: v + 1e-3 for k, v in g.items()}), metrics=honest.metrics
        )




class Lazy(Trainer):
    """Trains on the first 10% of its chunk's samples only (a cheap approximation)."""

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        x, y = chunk_codec.decode_chunk(chunks[0])
        n = max(1, len(y) // 10)
        return await super().train_task(job, model, [chunk_codec.encode_chunk(x[:n], y[:n])], stop)


class Sleeper(Lazy):
    """Honest for its first task (probation verifies it, and it is paid), lazy after."""

    trained = 0

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        self.trained += 1
        if self.trained == 1:
            return await Trainer.train_task(self, job, model, chunks, stop)
        return await super().train_task(job, model, chunks, stop)


COPY_DIR_ENV = "DISTRO_TEST_COPY_DIR"
"""Where a ``Leaker`` drops its updates and a ``Copier`` picks them up."""


class Leaker(Trainer):
    """Honest, but leaves each update in ``$DISTRO_TEST_COPY_DIR`` for a copier."""

    async def upload_and_announce(self, job_id: str, round: int, job: Any, task: Any,
                                  result: TrainResult, client: Any) -> Any:
        import os
        from pathlib import Path

        note = await super().upload_and_announce(job_id, round, job, task, result, client)
        folder = Path(os.environ[COPY_DIR_ENV])
        name = f"{job_id}-{round}-{job.nonce.hex()}"
        (folder / f"{name}.tmp").write_bytes(result.weights)
        (folder / f"{name}.tmp").rename(folder / f"{name}.bin")
        return note


class Copier(Trainer):
    """Sends a leaker's update of another task of the same round instead of its own.

    When the leaker is its own replica (the same task) it sends its honest result.
    """

    async def upload_and_announce(self, job_id: str, round: int, job: Any, task: Any,
                                  result: TrainResult, client: Any) -> Any:
        import os
        from pathlib import Path

        import trio

        folder, mine = Path(os.environ[COPY_DIR_ENV]), f"{job_id}-{round}-{job.nonce.hex()}"
        found: list[Path] = []
        with trio.move_on_after(60):
            while not found:
                found = [p for p in folder.glob(f"{job_id}-{round}-*.bin")  # noqa: ASYNC240
                         if p.stem != mine]
                await trio.sleep(0.2)
        if found:
            await trio.sleep(1.0)  # announce after the source, as a copier must
            result = TrainResult(weights=found[0].read_bytes(), metrics=result.metrics)
        return await super().upload_and_announce(job_id, round, job, task, result, client)


class Sybil(Trainer):
    """One of a swarm: trains honestly, then adds a small push every Sybil shares.

    The push (+0.05 on every weight) is small enough to pass per-update validation;
    a swarm of them would drag the average their way if given weight.
    """

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        honest = await super().train_task(job, model, chunks, stop)
        w = weights.decode(honest.weights, _spec(job))
        return TrainResult(
            weights=weights.encode({k: v + 0.05 for k, v in w.items()}), metrics=honest.metrics
        )


class QuietSybil(Trainer):
    """One of a swarm tuned to stay under the owner's cheat bound.

    Trains honestly, then adds a push every copy shares (the same direction, all
    ones) of 5% of its honest delta's norm: about 0.05 away from the owner's re-run
    of the task, above ``replica_tolerance`` (not verified) but under
    ``rerun_charge_above`` (not charged). Only quarantine keeps it out of the model.
    """

    PUSH = 0.05

    async def train_task(
        self, job: Any, model: bytes, chunks: list[bytes], stop: threading.Event
    ) -> TrainResult:
        honest = await super().train_task(job, model, chunks, stop)
        spec = _spec(job)
        g, w = weights.decode(model, spec), weights.decode(honest.weights, spec)
        norm = sum(float(((w[k] - g[k]) ** 2).sum()) for k in g) ** 0.5
        size = sum(v.numel() for v in g.values())
        step = self.PUSH * norm / size**0.5
        return TrainResult(weights=weights.encode({k: v + step for k, v in w.items()}),
                           metrics=honest.metrics)


ADVERSARIES: dict[str, type[Trainer]] = {
    "freeload": Freeloader,
    "sample_liar": SampleLiar,
    "copycat": Copycat,
    "slow": Straggler,
    "sign_flip": SignFlip,
    "noise": GaussianNoise,
    "label_flip": LabelFlip,
    "replay": Replayer,
    "lazy": Lazy,
    "leaker": Leaker,
    "copier": Copier,
    "sybil": Sybil,
    "quiet_sybil": QuietSybil,
    "sleeper": Sleeper,
}
