"""Preparing a job's data: load, split and chunk it, store the chunks and the first model.

Preparation is deterministic under the spec's seed, so a restarted owner prepares
the same chunks; what was stored before a restart is found by content address and
not uploaded again. The job store records the chunks and the initial model in one
transaction, after which the job is ``running``.

An encrypted job (the default, ``OwnerConfig.encrypt``) gets its key before
anything is stored, kept in the job store so a restarted owner still opens what
it stored; chunks and models then leave the owner only as ciphertext
(``protocols.job.objects``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from protocols.job import compute, jobdata
from protocols.job.objects import JobKey
from protocols.job.owner.config import LiveJob
from protocols.job.owner.delta import ModelDelta
from protocols.job.ports import ChunkRow, JobStoreLike
from protocols.job.records import JobState, Phase
from storage import crypto
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
        model_sha: Its sha256 (of the plaintext: the model's identity).
        model_round: The round that made it (0: the initial model).
        model_cipher_sha: The sha256 of the stored object when the job is encrypted
            (what a downloader checks in transit), else "".
        model_stored_size: The stored object's size.
        model_delta: The current model as a delta from the previous one, if stored
            (``owner.delta``); None for the initial or a resumed job's model.
    """

    prepared: jobdata.Prepared
    slots: dict[int, list[ChunkRow]]
    model: bytes
    model_key: str
    model_sha: str
    model_round: int = 0
    model_cipher_sha: str = ""
    model_stored_size: int = 0
    model_delta: ModelDelta | None = None

    def samples(self, slot: int) -> int:
        """The owner's own count of ``slot``'s training samples (the FedAvg weight)."""
        return sum(c.samples for c in self.slots.get(slot, ()))


async def prepare_job(
    live: LiveJob, jobs: JobStoreLike, store: Any, prefix: str, *, encrypt: bool = True
) -> JobData:
    """Prepare ``live``'s data, store what is missing, and load the current model.

    :func:`prepare_data` then :func:`store_job`; the owner runs the two apart, to
    announce and recruit while the chunks upload.
    """
    prepared = await prepare_data(live)
    return await store_job(live, prepared, jobs, store, prefix, encrypt=encrypt)


async def prepare_data(live: LiveJob) -> jobdata.Prepared:
    """Load, split and chunk ``live``'s data in a worker thread; nothing is stored.

    Raises:
        training.errors.SpecError: as ``jobdata.prepare``.
    """
    return await trio.to_thread.run_sync(jobdata.prepare, live.spec)


async def store_job(
    live: LiveJob,
    prepared: jobdata.Prepared,
    jobs: JobStoreLike,
    store: Any,
    prefix: str,
    *,
    encrypt: bool = True,
) -> JobData:
    """Store what of ``prepared`` is missing, and load the current model.

    ``encrypt`` decides for a job not prepared yet; a job that was keeps its choice
    (its key, or its absence, is in the job store).

    Raises:
        RuntimeError: the stored model does not match its recorded hash.
        storage.crypto.DecryptError: the stored model does not decrypt.
    """
    row = jobs.job(live.job_id)
    secret = jobs.job_key(live.job_id)
    if row is not None and row.state == JobState.PREPARING:
        if secret is None and encrypt and not jobs.chunks(live.job_id):
            secret = crypto.new_key()
            jobs.set_job_key(live.job_id, secret)
        live.job_key = JobKey(live.job_id, secret) if secret else None
        live.phase = Phase.UPLOADING
        await _upload(live, prepared, jobs, store, prefix)
        row = jobs.job(live.job_id)
    else:
        live.job_key = JobKey(live.job_id, secret) if secret else None
        done = row.completed_round if row is not None else 0
        log.info("job %s: resuming after round %d; data already stored", live.job_id, done)
    assert row is not None and row.model_key and row.model_sha256
    data = JobData(prepared, {}, b"", row.model_key, row.model_sha256, row.completed_round)
    await trio.to_thread.run_sync(_load_model, live.job_key, store, data)
    for c in jobs.chunks(live.job_id):
        data.slots.setdefault(c.slot, []).append(c)
    return data


def _load_model(job_key: JobKey | None, store: Any, data: JobData) -> None:
    """Read (and decrypt) ``data``'s stored model and check its hash (blocking)."""
    stored = store.get_bytes(data.model_key)
    sha = data.model_sha
    model = job_key.open_model(data.model_round, stored, sha) if job_key else stored
    if compute.sha256(model) != sha:
        raise RuntimeError(f"stored model {data.model_key} does not match its recorded hash")
    data.model = model
    data.model_cipher_sha = hashlib.sha256(stored).hexdigest() if job_key else ""
    data.model_stored_size = len(stored)


async def _upload(
    live: LiveJob, prepared: jobdata.Prepared, jobs: JobStoreLike, store: Any, prefix: str
) -> None:
    job_id, job_key = live.job_id, live.job_key
    seal = job_key.seal_chunk if job_key else None
    rows: list[ChunkRow] = []
    for slot, items in enumerate(prepared.slots):
        manifest = await trio.to_thread.run_sync(
            partial(upload_chunks, store, prefix, items, seal=seal)
        )
        rows += [
            ChunkRow(slot, i, e.key, e.sha256, e.size, e.samples)
            if not e.plain_sha256
            else ChunkRow(slot, i, e.key, e.plain_sha256, e.plain_size, e.samples, e.sha256, e.size)
            for i, e in enumerate(manifest.entries)
        ]
    sha = compute.sha256(prepared.initial)
    key = model_key(prefix, 0, job_key.blind(sha) if job_key else sha)
    await trio.to_thread.run_sync(store_model, job_key, store, key, 0, prepared.initial, sha)
    await trio.lowlevel.checkpoint_if_cancelled()  # a cancel during the upload ends it here
    jobs.set_prepared(job_id, rows, key, sha)
    log.info(
        "job %s: data stored%s: %d chunks in %d slots",
        job_id,
        " encrypted" if job_key else " in the clear",
        len(rows),
        len(prepared.slots),
    )


def store_model(
    job_key: JobKey | None, store: Any, key: str, round_no: int, model: bytes, sha: str
) -> tuple[str, int]:
    """Store a global model, encrypted when the job is (blocking).

    Returns:
        The stored object's sha256 ("" when stored in the clear) and size.
    """
    stored = job_key.seal_model(round_no, model, sha) if job_key else model
    store.put_bytes(key, stored, DEFAULT_CONTENT_TYPE)
    return (hashlib.sha256(stored).hexdigest() if job_key else "", len(stored))


def model_key(prefix: str, round_no: int, sha: str) -> str:
    """The object key of the global model after ``round_no`` (0: the initial model).

    ``sha`` is the model's sha256, or for an encrypted job its ``JobKey.blind`` form.
    """
    return f"{prefix}models/{round_no}-{sha}.safetensors"
