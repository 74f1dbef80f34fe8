"""The confidential data plane, against both S3 servers (nanio and SeaweedFS).

The owner's own code stores a real job (digits chunks and a model) and builds the
trainers' tasks; the trainers' own code fetches by presigned URL and opens what it
was given. What the storage operator reads with the owner's credentials must hold
none of the data's or the model's bytes, and no ciphertext may be opened anywhere
but in its own place, by its own readers.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.jobstore import JobStore
from protocols.job import objects, rounds
from protocols.job.owner.arrivals import RoundCtx
from protocols.job.owner.config import LiveJob, OwnerConfig, OwnerEnv, OwnerStats
from protocols.job.owner.prepare import JobData, model_key, prepare_job, store_model
from protocols.job.owner.round import RoundRunner
from protocols.job.spec import from_mapping
from protocols.job.taskfetch import open_task
from protocols.pb import distro_pb2 as pb
from storage import crypto, transfer
from storage.crypto import DecryptError
from storage.errors import HashMismatch
from storage.s3 import S3Store
from storage.store import job_prefix

SPEC = from_mapping(
    {
        "model": "logreg",
        "dataset": "digits",
        "rounds": 2,
        "trainers": 2,
        "partition": "iid",
        "chunk_samples": 200,
    }
)
OWNER = "12D3KooWOwner"
TRAINERS = ("12D3KooWTrainerA", "12D3KooWTrainerB")


def _all_objects(store: S3Store) -> dict[str, bytes]:
    """Every object under the store's prefix, read with the owner's credentials."""
    listed = store.client.list_objects_v2(Bucket=store.config.bucket, Prefix=store.config.prefix)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    return {
        k: store.client.get_object(Bucket=store.config.bucket, Key=k)["Body"].read() for k in keys
    }


def _patterns(data: JobData) -> list[bytes]:
    """Known byte patterns: slices of every chunk and of the model's header and tensors."""
    out = [data.model[:64], data.model[len(data.model) // 2 :][:48], data.model[-48:]]
    for slot in data.prepared.slots:
        for chunk, _ in slot:
            out += [chunk[:48], chunk[len(chunk) // 2 :][:48], chunk[-48:]]
    return out


async def _job(store: S3Store, tmp: Path, *, encrypt: bool) -> tuple[LiveJob, JobData, JobStore]:
    """Prepare a job with the owner's code and store a round-1 model beside the initial one."""
    job_id = f"conf-{encrypt}"
    jobs = JobStore(tmp / f"jobs-{encrypt}.sqlite3")
    jobs.create_job(job_id, SPEC.to_json())
    live = LiveJob(job_id, SPEC)
    prefix = job_prefix(OWNER, job_id)
    data = await prepare_job(live, jobs, store, prefix, encrypt=encrypt)
    await trio.to_thread.run_sync(
        store_model,
        live.job_key,
        store,
        _round_key(live, 1, data.model_sha),
        1,
        data.model,
        data.model_sha,
    )
    return live, data, jobs


def _round_key(live: LiveJob, round_no: int, sha: str) -> str:
    """Where the owner stores the model of ``round_no`` (as ``close`` does)."""
    name = live.job_key.blind(sha) if live.job_key else sha
    return model_key(job_prefix(OWNER, live.job_id), round_no, name)


async def _task(store: S3Store, live: LiveJob, data: JobData, slot: int) -> pb.Task:
    """The task the owner's round code builds for ``slot`` (before sealing)."""

    async def get_store() -> Any:
        return store

    env = OwnerEnv(
        None,  # type: ignore[arg-type]  # building a task needs no network
        None,  # type: ignore[arg-type]
        OwnerConfig(),
        None,  # type: ignore[arg-type]
        OwnerStats(),
        None,  # type: ignore[arg-type]
        get_store,
        lambda job_id: job_prefix(OWNER, job_id),
    )
    # The round's slot layout, as RoundRunner sets it at a round's start (equal shares).
    live.layout = {s: tuple(cs) for s, cs in sorted(data.slots.items())}
    send, _recv = trio.open_memory_channel[Any](1)
    url = store.presign_get(data.model_key, 600)
    ctx = RoundCtx(live, data, 1, url, 600, send)
    return await RoundRunner(env)._task(ctx, rounds.SendTask(TRAINERS[slot], slot))


async def _fetch(task: pb.Task) -> tuple[bytes, list[bytes]]:
    """What the trainer downloads: ciphertexts checked against their transport hashes."""
    items = [transfer.FetchItem(task.model_url, task.model_cipher_sha256, task.model_cipher_bytes)]
    items += [transfer.FetchItem(c.url, c.cipher_sha256, c.cipher_size) for c in task.chunks]
    model, *chunks = await transfer.fetch_many(items)
    return model, chunks


async def test_the_bucket_holds_no_plaintext_and_each_trainer_opens_only_its_own(
    any_store: S3Store, tmp_path: Path
) -> None:
    # Control: stored in the clear, the operator reads the patterns (the check can fail).
    _, clear, _ = await _job(any_store, tmp_path, encrypt=False)
    seen = b"\0".join(_all_objects(any_store).values())
    assert all(p in seen for p in _patterns(clear))
    any_store.delete_prefix("")

    live, data, jobs = await _job(any_store, tmp_path, encrypt=True)
    stored = _all_objects(any_store)
    assert len(stored) == len({c.key for s in data.slots.values() for c in s}) + 2
    everything = b"\0".join(stored.values())
    leaked = [p for p in _patterns(data) if p in everything]
    assert not leaked, f"{len(leaked)} plaintext patterns readable in the bucket"
    # Neither the plaintext hashes of the chunks nor of the model name any object.
    names = " ".join(stored)
    assert data.model_sha not in names
    assert not any(c.sha256 in names for s in data.slots.values() for c in s)

    tasks = [await _task(any_store, live, data, slot) for slot in (0, 1)]
    for slot, task in enumerate(tasks):
        model, chunks = await _fetch(task)
        model, chunks = open_task(live.job_id, task, model, chunks)
        assert model == data.model
        assert chunks == [c for c, _ in data.prepared.slots[slot]]

    # A trainer's task holds only its own slot's keys: none opens the other's chunks.
    mine, theirs = tasks
    _, their_chunks = await _fetch(theirs)
    assert not {c.key for c in mine.chunks} & {c.key for c in theirs.chunks}
    for meta, sealed in zip(theirs.chunks, their_chunks, strict=True):
        for key in (c.key for c in mine.chunks):
            with pytest.raises(DecryptError):
                crypto.decrypt(key, objects.chunk_id(live.job_id, meta.sha256), sealed)
    jobs.close()


async def test_moved_and_tampered_ciphertexts_are_refused(
    any_store: S3Store, tmp_path: Path
) -> None:
    live, data, jobs = await _job(any_store, tmp_path, encrypt=True)
    assert live.job_key is not None
    task = await _task(any_store, live, data, 0)
    first, second = task.chunks[0], task.chunks[1]
    prefix = job_prefix(OWNER, live.job_id)

    # Moved: chunk 1's ciphertext put at chunk 2's key, under chunk 2's key and name.
    moved = any_store.get_bytes(f"{prefix}chunks/{first.cipher_sha256}")
    any_store.put_bytes(f"{prefix}chunks/{second.cipher_sha256}", moved)
    with pytest.raises(DecryptError) as err:
        crypto.decrypt(second.key, objects.chunk_id(live.job_id, second.sha256), moved)
    assert err.value.reason == "undecryptable" and err.value.detail == "tampered"
    # The transfer refuses it even before that: its hash is not the one in the task.
    with pytest.raises(HashMismatch):
        await transfer.fetch(second.url, sha256=second.cipher_sha256, max_bytes=second.cipher_size)

    # Moved across rounds: the round-1 model's ciphertext where round 2's would be.
    sha = data.model_sha
    round1 = any_store.get_bytes(_round_key(live, 1, sha))
    with pytest.raises(DecryptError):
        live.job_key.open_model(2, round1, sha)
    assert live.job_key.open_model(1, round1, sha) == data.model

    # Tampered in place: one flipped bit in the stored model.
    stored = bytearray(any_store.get_bytes(data.model_key))
    stored[len(stored) // 2] ^= 0x01
    any_store.put_bytes(data.model_key, bytes(stored))
    with pytest.raises(HashMismatch):
        await _fetch(task)
    with pytest.raises(DecryptError) as err:
        live.job_key.open_model(0, bytes(stored), sha)
    assert "cannot decrypt model" in str(err.value) and err.value.detail == "tampered"
    # A restarted owner refuses the tampered model when it resumes the job.
    jobs.set_prepared(live.job_id, jobs.chunks(live.job_id), data.model_key, sha)
    with pytest.raises(DecryptError):
        await prepare_job(LiveJob(live.job_id, SPEC), jobs, any_store, prefix)
    jobs.close()


async def test_a_restarted_owner_opens_its_resumed_job(any_store: S3Store, tmp_path: Path) -> None:
    live, data, jobs = await _job(any_store, tmp_path, encrypt=True)
    jobs.set_prepared(live.job_id, jobs.chunks(live.job_id), data.model_key, data.model_sha)
    jobs.close()
    again = JobStore(tmp_path / "jobs-True.sqlite3")  # the same database, reopened
    resumed = LiveJob(live.job_id, SPEC)
    prefix = job_prefix(OWNER, live.job_id)
    # Asked not to encrypt, it keeps the job's choice: the key is in its job store.
    back = await prepare_job(resumed, again, any_store, prefix, encrypt=False)
    assert resumed.job_key == live.job_key and back.model == data.model
    assert back.model_cipher_sha == hashlib.sha256(any_store.get_bytes(data.model_key)).hexdigest()
    assert [dataclasses.astuple(c) for s in back.slots.values() for c in s] == [
        dataclasses.astuple(c) for s in data.slots.values() for c in s
    ]
    again.close()


def test_deduplication_within_a_job_still_works(any_store: S3Store) -> None:
    from storage.chunks import upload_chunks

    key = objects.JobKey("dedup", crypto.new_key())
    items = [(b"same chunk" * 100, 10), (b"other" * 100, 10), (b"same chunk" * 100, 10)]
    manifest = upload_chunks(any_store, "jobs/o/dedup/", items, seal=key.seal_chunk)
    first, _, third = manifest.entries
    assert first.key == third.key and first.sha256 == third.sha256
    assert first.plain_sha256 == hashlib.sha256(items[0][0]).hexdigest()
    assert len(_all_objects(any_store)) == 2


async def test_a_large_model_streams_to_a_file_decrypted_as_it_arrives(
    any_store: S3Store, tmp_path: Path
) -> None:
    model = bytes(range(256)) * (10 * 1024 + 7)  # 2.5 MiB: three segments
    sha = hashlib.sha256(model).hexdigest()
    job = objects.JobKey("stream", crypto.new_key())
    sealed = job.seal_model(3, model, sha)
    any_store.put_bytes("m.bin", sealed)
    url, cipher_sha = any_store.presign_get("m.bin"), hashlib.sha256(sealed).hexdigest()
    how = transfer.Decrypt(job.model_key(3, sha), objects.model_id("stream", 3, sha), sha)
    target = tmp_path / "model.safetensors"
    await transfer.fetch_to_file(url, target, sha256=cipher_sha, max_bytes=len(sealed), decrypt=how)
    assert target.read_bytes() == model
    # Under another identity (the round-4 model's place) nothing is written.
    target.unlink()
    wrong = transfer.Decrypt(how.key, objects.model_id("stream", 4, sha), sha)
    with pytest.raises(DecryptError):
        await transfer.fetch_to_file(
            url, target, sha256=cipher_sha, max_bytes=len(sealed), decrypt=wrong
        )
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240 - a test's tiny folder


def test_malformed_keys_and_half_encrypted_announcements_are_refused() -> None:
    from protocols.job import codec
    from protocols.job.taskcheck import keys_well_formed

    good = pb.Task(
        model_key=b"k" * 32,
        model_cipher_sha256="a" * 64,
        chunks=[pb.Chunk(key=b"k" * 32, cipher_sha256="b" * 64)],
    )
    assert keys_well_formed(good) and keys_well_formed(pb.Task(chunks=[pb.Chunk()]))
    assert not keys_well_formed(pb.Task(model_key=b"short", model_cipher_sha256="a" * 64))
    assert not keys_well_formed(pb.Task(chunks=[pb.Chunk(key=b"k" * 32)]))
    assert not keys_well_formed(pb.Task(chunks=[pb.Chunk(key=b"k" * 32, cipher_sha256="X")]))

    def parsed(**fields: Any) -> str:
        body = codec.update_note(
            sha256="c" * 64,
            size=1,
            samples=1,
            loss=0.1,
            accuracy=0.5,
            seconds=1.0,
            sealed_url=b"u",
            **fields,
        )
        msg = type("Msg", (), {"body": body})()
        try:
            codec.parse_update(msg)  # type: ignore[arg-type]
        except codec.BodyError as exc:
            return exc.reason
        return ""

    assert parsed(cipher_sha256="d" * 64, sealed_key=b"s") == ""
    assert parsed(cipher_sha256="d" * 64) == "bad_field"
    assert parsed(sealed_key=b"s") == "bad_field"
    assert parsed(cipher_sha256="nothex", sealed_key=b"s") == "bad_sha256"
