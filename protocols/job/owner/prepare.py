"""Preparing a job's data: load, split and chunk it, store the chunks and the first model.

Preparation is deterministic under the spec's seed, so a restarted owner prepares
the same chunks; what was stored before a restart is found by content address and
not uploaded again. The job store records the chunks and the initial model in one
transaction, after which the job is ``running``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import trio

from protocols.job import compute
from protocols.job.owner.config import LiveJob
from protocols.job.ports import ChunkRow, JobStoreLike
from protocols.job.records import JobState, Phase
from storage.chunks import upload_chunks
from storage.store import DEFAULT_CONTENT_TYPE

log = logging.getLogger("distro_train.owner")


@dataclass
class JobData:
    """What every round of a job reads: the prepared data and the current global model.

    Attributes:
        prepared: Chunks, held-out and test sets (owner's memory only).
        slots: Each slot's stored chunks.
        model: The current global model's bytes.
        model_key: Its object key.
        model_sha: Its sha256.
    """

    prepared: compute.Prepared
    slots: dict[int, list[ChunkRow]]
    model: bytes
    model_key: str
    model_sha: str

    def samples(self, slot: int) -> int:
        """The owner's own count of ``slot``'s training samples (the FedAvg weight)."""
        return sum(c.samples for c in self.slots.get(slot, ()))


async def prepare_job(live: LiveJob, jobs: JobStoreLike, store: Any, prefix: str) -> JobData:
    """Prepare ``live``'s data, store what is missing, and load the current model.

    Raises:
        RuntimeError: the stored model does not match its recorded hash.
    """
    prepared = await trio.to_thread.run_sync(compute.prepare, live.spec)
    row = jobs.job(live.job_id)
    if row is not None and row.state == JobState.PREPARING:
        live.phase = Phase.UPLOADING
        await _upload(live.job_id, prepared, jobs, store, prefix)
        row = jobs.job(live.job_id)
    else:
        done = row.completed_round if row is not None else 0
        log.info("job %s: resuming after round %d; data already stored", live.job_id, done)
    assert row is not None and row.model_key and row.model_sha256
    model = await trio.to_thread.run_sync(store.get_bytes, row.model_key)
    if compute.sha256(model) != row.model_sha256:
        raise RuntimeError(f"stored model {row.model_key} does not match its recorded hash")
    slots: dict[int, list[ChunkRow]] = {}
    for c in jobs.chunks(live.job_id):
        slots.setdefault(c.slot, []).append(c)
    return JobData(prepared, slots, model, row.model_key, row.model_sha256)


async def _upload(
    job_id: str, prepared: compute.Prepared, jobs: JobStoreLike, store: Any, prefix: str
) -> None:
    rows: list[ChunkRow] = []
    for slot, items in enumerate(prepared.slots):
        manifest = await trio.to_thread.run_sync(upload_chunks, store, prefix, items)
        rows += [
            ChunkRow(slot, i, e.key, e.sha256, e.size, e.samples)
            for i, e in enumerate(manifest.entries)
        ]
    sha = compute.sha256(prepared.initial)
    key = model_key(prefix, 0, sha)
    await trio.to_thread.run_sync(store.put_bytes, key, prepared.initial, DEFAULT_CONTENT_TYPE)
    jobs.set_prepared(job_id, rows, key, sha)
    log.info("job %s: data stored: %d chunks in %d slots", job_id, len(rows), len(prepared.slots))


def model_key(prefix: str, round_no: int, sha: str) -> str:
    """The object key of the global model after ``round_no`` (0: the initial model)."""
    return f"{prefix}models/{round_no}-{sha}.safetensors"
