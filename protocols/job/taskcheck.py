"""A trainer's admission checks of a job and of an owner's task, torch-free.

Each returns a refusal reason code, or "" when the trainer takes the work: a task
over its compute and memory budget is refused as ``over_budget`` before torch is
imported or anything is allocated (``training.budget``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from distro_errors import DistroError
from protocols.job import codec, compute, lean, objects
from protocols.job.spec import MODELS
from protocols.job.trainerconfig import TrainerConfig
from protocols.pb import distro_pb2 as pb
from storage import crypto
from training import budget

if TYPE_CHECKING:
    from protocols.market.earnings import TrainerMarket


def job_fits(
    ann: pb.JobAnnounce, cfg: TrainerConfig, health: dict[str, Any], market: TrainerMarket | None
) -> bool:
    """Whether to offer for the job ``ann`` announced, given this daemon's ``health``.

    A paid job needs the ``market`` (none: unpaid jobs only) to accept its terms.
    """
    if not may_fit(ann, cfg, health, market) or ann.preparing:
        return False
    if ann.data_bytes_per_trainer > cfg.max_data_bytes:
        return False
    return not over_budget(ann, ann.data_bytes_per_trainer, ann.samples, cfg.limits)


def may_fit(
    ann: pb.JobAnnounce, cfg: TrainerConfig, health: dict[str, Any], market: TrainerMarket | None
) -> bool:
    """What of :func:`job_fits` the spec alone decides (a ``preparing`` announcement).

    The model, the expiry, the price and our health; not the data's sizes or the
    model's cost, which the owner does not know yet.
    """
    if ann.model_name not in MODELS or ann.expires_ms < time.time() * 1000:
        return False
    if ann.price_budget and (market is None or not market.accepts(ann)):
        return False
    return bool(health.get("accepting")) and float(health.get("health", 0)) >= ann.min_health


def task_problem(task: pb.Task, ann: pb.JobAnnounce, cfg: TrainerConfig) -> str:
    """Why ``task`` of the job ``ann`` announced is refused under ``cfg``, or ""."""
    if task.model_bytes > cfg.max_model_bytes:
        return "oversize_model"
    if len(task.chunks) == 0 or len(task.chunks) > cfg.max_chunks:
        return "bad_chunks"
    if sum(c.size for c in task.chunks) > cfg.max_data_bytes:
        return "oversize_data"
    if not keys_well_formed(task):
        return "bad_keys"
    if lean.task_problem(task):
        return lean.task_problem(task)
    if any(c.key and c.cipher_size > crypto.max_sealed_size(c.size) for c in task.chunks):
        # What is downloaded is bounded by the plaintext sizes checked above.
        return "oversize_data"
    urls = [task.model_url, task.upload_url, task.update_get_url, *(c.url for c in task.chunks)]
    if not all(u.startswith(("http://", "https://")) for u in urls):
        return "bad_url"
    if task.deadline_ms and task.deadline_ms <= time.time() * 1000:
        return "deadline"
    samples = sum(c.samples for c in task.chunks)
    return over_budget(ann, sum(c.size for c in task.chunks), samples, cfg.limits)


def over_budget(ann: pb.JobAnnounce, data_bytes: int, samples: int, limits: budget.Limits) -> str:
    """The reason a job's task is beyond ``limits`` (torch-free), or ""."""
    try:
        cost = budget.estimate(
            compute.json_object(ann.model_params_json, "model"),
            compute.json_object(ann.train_params_json, "train params"),
            data_bytes=data_bytes,
            samples=samples,
        )
        budget.check(cost, limits)
    except DistroError as exc:
        return exc.reason
    except ValueError:
        return "bad_spec"
    return ""


def keys_well_formed(task: pb.Task) -> bool:
    """Whether every key in ``task`` is a 32-byte key with a ciphertext hash beside it."""
    pairs = [(task.model_key, task.model_cipher_sha256)]
    pairs += [(c.key, c.cipher_sha256) for c in task.chunks]
    return all(
        (not key and not sha)
        or (len(key) == objects.KEY_BYTES and codec.SHA256_HEX.fullmatch(sha) is not None)
        for key, sha in pairs
    )


def seconds_left(task: pb.Task, max_task_s: float) -> float:
    """Seconds until the task must be over: its deadline, capped by ``max_task_s``."""
    left = max_task_s
    if task.deadline_ms:
        left = min(left, task.deadline_ms / 1000 - time.time())
    return max(0.0, left)
