"""The trainer's lean data plane: the model by delta, the update compressed.

- :func:`model_by_delta`: when the task offers the round's model as a delta against
  a model this trainer still holds (``protocols.job.jobmemory``), fetch the delta
  and rebuild the model; any failure (no base, a bad delta, a wrong hash) answers
  None and the trainer fetches the whole model as before. The rebuilt model must
  hash to the task's ``model_sha256``, the same check as a model fetched whole.
- :func:`compressed`: compress a trained update as the task asks, keeping the
  job's error-feedback residual in memory between tasks.

docs/training.md describes both, with the sizes measured.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import trio

from protocols.job import compute, objects
from protocols.job.jobmemory import BASE, RESIDUAL, JobMemory
from protocols.pb import distro_pb2 as pb
from storage import crypto

if TYPE_CHECKING:
    import httpx

    from training.local import TrainResult

log = logging.getLogger("distro_train.trainer")

MODES = ("none", "fp16", "bf16", "int8", "topk")
"""Compression forms a task may ask for (``training.compress.MODES``); "" is "none"."""


def task_problem(task: pb.Task) -> str:
    """The refusal reason of a task's compression fields, or ""."""
    if task.compression not in ("", *MODES):
        return "bad_compression"
    if task.compression == "topk" and not 0 < task.topk_fraction <= 1:
        return "bad_compression"
    return ""


async def model_by_delta(
    memory: JobMemory, job_id: str, task: pb.Task, client: httpx.AsyncClient, max_bytes: int
) -> tuple[bytes, int] | None:
    """The round's plaintext model rebuilt from its delta, and the bytes fetched for it.

    None: fetch the model whole.
    """
    from storage import transfer

    if not task.model_delta_url or task.model_delta_bytes > max_bytes:
        return None
    base = memory.get(job_id, BASE, task.model_base_sha256)
    if base is None:
        return None
    try:
        stored = await transfer.fetch(
            task.model_delta_url,
            sha256=task.model_delta_sha256,
            max_bytes=task.model_delta_bytes,
            client=client,
        )
        model = await trio.to_thread.run_sync(_rebuild, job_id, task, base, stored)
    except Exception as exc:  # noqa: BLE001 - a bad delta costs a whole download, no more
        log.info("job %s: model delta unusable, fetching the whole model: %r", job_id, exc)
        return None
    if compute.sha256(model) != task.model_sha256:
        log.info("job %s: model delta does not rebuild the model; fetching it whole", job_id)
        return None
    return model, len(stored)


def _rebuild(job_id: str, task: pb.Task, base: bytes, stored: bytes) -> bytes:
    """Open (when encrypted) and apply a model delta (blocking)."""
    delta = stored
    if task.model_key:
        oid = objects.model_delta_id(job_id, task.model_round, task.model_sha256)
        delta = crypto.decrypt(task.model_key, oid, stored)
    # numpy comes with the train/own extras; a base daemon imports this module but
    # never builds or applies a delta.
    from training import modeldelta

    return modeldelta.apply(base, delta)


async def compressed(
    memory: JobMemory, job_id: str, round: int, ann: pb.JobAnnounce, task: pb.Task,
    model: bytes, result: TrainResult,
) -> TrainResult:
    """``result`` with its weights compressed as ``task`` asks (unchanged for "none").

    The job's residual is read from and written back to ``memory``, and ``model``
    kept there as the base of the next round's model delta; after the job's last
    round (``ann.rounds``) everything kept for it is dropped.
    """
    mode = task.compression or "none"
    if mode != "none":
        residual = memory.get(job_id, RESIDUAL) or b""
        blob, left = await trio.to_thread.run_sync(
            compute.compress_update, ann.model_params_json, model, result.weights, mode,
            task.topk_fraction, residual,
        )
        memory.put(job_id, RESIDUAL, left)
        result = dataclasses.replace(result, weights=blob)
    if round >= ann.rounds:
        memory.drop(job_id)  # the job's last round: nothing more to reuse
    else:
        memory.put(job_id, BASE, model, tag=task.model_sha256)
    return result
