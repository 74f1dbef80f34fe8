"""A trainer's task inputs: fetch the model and chunks, reuse cached chunks, decrypt.

Everything is fetched by the task's presigned URLs and checked against the sha256
the owner sealed into the task; chunks fetched before (a later round, another job)
come from the trainer's on-disk cache by that hash, and the model comes as a delta
against the last one the job trained from when the owner offers one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from protocols.job import compute, lean, objects
from protocols.pb import distro_pb2 as pb
from storage import crypto

if TYPE_CHECKING:
    import httpx

    from protocols.job.chunkcache import ChunkCache
    from protocols.job.jobmemory import JobMemory


@dataclass
class Inputs:
    """A task's opened inputs.

    Attributes:
        model: The round's global model (plaintext safetensors).
        chunks: The task's chunks, in its order (plaintext).
        bytes_in: Bytes that crossed the network for them.
        by_delta: Whether the model was rebuilt from a delta, not fetched whole.
    """

    model: bytes
    chunks: list[bytes]
    bytes_in: int
    by_delta: bool


async def fetch_task(
    job_id: str,
    task: pb.Task,
    client: httpx.AsyncClient,
    cache: ChunkCache,
    memory: JobMemory,
    max_model: int,
) -> Inputs:
    """Fetch, check and open ``task``'s model and chunks; fresh chunks are cached."""
    from storage import transfer  # httpx only when working

    items = [
        transfer.FetchItem(task.model_url, task.model_sha256, max_model)
        if not task.model_key
        else transfer.FetchItem(
            task.model_url, task.model_cipher_sha256, crypto.sealed_size(max_model)
        ),
        *(
            transfer.FetchItem(c.url, c.cipher_sha256, c.cipher_size)
            if c.key
            else transfer.FetchItem(c.url, c.sha256, c.size)
            for c in task.chunks
        ),
    ]
    # Chunks this trainer fetched before come from its cache, by the hash they are
    # fetched under: only the others cross the network.
    keys = [c.cipher_sha256 if c.key else c.sha256 for c in task.chunks]
    cached = await trio.to_thread.run_sync(lambda: [cache.get(k) for k in keys])
    # The model as a delta against the one the last task trained from, when offered.
    by_delta = await lean.model_by_delta(memory, job_id, task, client, max_model)
    known = by_delta[0] if by_delta is not None else None
    head = [items[0]] if known is None else []
    wanted = [*head, *(it for it, hit in zip(items[1:], cached, strict=True) if hit is None)]
    got = await transfer.fetch_many(wanted, client=client)
    model, fetched = (got[0], got[1:]) if known is None else (b"", got)
    bytes_in = len(model) + sum(len(c) for c in fetched)
    if by_delta is not None:
        bytes_in += by_delta[1]
    new = iter(fetched)
    chunks = [hit if hit is not None else next(new) for hit in cached]
    fresh = [(k, d) for k, hit, d in zip(keys, cached, chunks, strict=True) if hit is None]

    def keep() -> None:
        for k, d in fresh:
            cache.put(k, d)

    await trio.to_thread.run_sync(keep)
    # From here only ``chunks`` holds the data, and open_task frees each ciphertext
    # as it opens it: a task's chunks are never in memory twice.
    del got, fetched, new, cached
    fresh.clear()
    if task.model_key or any(c.key for c in task.chunks):
        model, chunks = await trio.to_thread.run_sync(
            open_task, job_id, task, model if known is None else None, chunks
        )
    model = model if known is None else known
    return Inputs(model, chunks, bytes_in, by_delta is not None)


def open_task(
    job_id: str, task: pb.Task, model: bytes | None, chunks: list[bytes]
) -> tuple[bytes, list[bytes]]:
    """Decrypt a task's verified ciphertexts and check their plaintext hashes (blocking).

    ``model`` None: the model came by delta, already open (b"" comes back for it).
    ``chunks`` is opened in place (and returned): each ciphertext is let go as soon
    as its plaintext is checked.

    Raises:
        storage.crypto.DecryptError: an object does not decrypt under its key and
            identity (``undecryptable``).
        storage.errors.HashMismatch: a plaintext is not the one the task names.
    """
    from storage.errors import HashMismatch

    def opened(url: str, key: bytes, oid: crypto.ObjectId, data: bytes, sha: str) -> bytes:
        plain = crypto.decrypt(key, oid, data) if key else data
        if key and compute.sha256(plain) != sha:
            raise HashMismatch(url, sha, compute.sha256(plain))
        return plain

    model_oid = objects.model_id(job_id, task.model_round, task.model_sha256)
    out_model = b"" if model is None else opened(
        task.model_url, task.model_key, model_oid, model, task.model_sha256
    )
    if len(chunks) != len(task.chunks):
        raise ValueError("one ciphertext per chunk of the task")
    for i, c in enumerate(task.chunks):  # in place: each ciphertext freed once opened
        chunks[i] = opened(c.url, c.key, objects.chunk_id(job_id, c.sha256), chunks[i], c.sha256)
    return out_model, chunks
