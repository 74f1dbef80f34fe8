"""A trainer's task output: encrypt the update, upload it, write its announcement.

The update goes up by the task's presigned POST (or PUT). When the owner asks for
it encrypted, it is sealed under a fresh key that only the owner can open
(``protocols.job.objects``); the announcement carries the update's hashes and
metrics, with its URL (and key) sealed to the owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from libp2p.crypto.keys import PublicKey

from protocols.job import codec, compute, objects
from protocols.pb import distro_pb2 as pb
from protocols.seal import seal
from storage import crypto

if TYPE_CHECKING:
    import httpx

    from training.local import TrainResult


async def upload_update(
    task: pb.Task,
    weights: bytes,
    owner_key: PublicKey,
    client: httpx.AsyncClient,
    *,
    job_id: str,
    round: int,
    trainer: str,
) -> tuple[str, bytes]:
    """Upload ``weights`` by the task's URL, encrypted when the task asks.

    ``trainer`` (this peer's base58 id) names the update object.

    Returns:
        (the ciphertext's sha256, the update's key sealed to the owner); ("", b"")
        for a plain update.
    """
    from storage import transfer  # httpx only when working

    body, cipher_sha, sealed_key = weights, "", b""
    if task.encrypt_update:
        # A fresh key for this update alone, readable by the owner only.
        secret = crypto.new_key()
        oid = objects.update_id(job_id, round, trainer)
        body = await trio.to_thread.run_sync(crypto.encrypt, secret, oid, weights)
        cipher_sha = compute.sha256(body)
        sealed_key = seal(
            secret,
            owner_key,
            purpose=objects.UPDATE_KEY_PURPOSE,
            job_id=job_id,
            round=round,
        )
    await transfer.upload(
        task.upload_url,
        body,
        content_type=task.upload_content_type or "application/octet-stream",
        fields=dict(task.upload_fields) or None,
        client=client,
    )
    return cipher_sha, sealed_key


def update_note(
    task: pb.Task, result: TrainResult, sha: str, owner_key: PublicKey, *,
    job_id: str, round: int, cipher_sha: str = "", sealed_key: bytes = b"",
) -> pb.UpdateAnnounce:
    """The announcement of an uploaded update, its URL sealed to the owner."""
    sealed_url = seal(
        task.update_get_url.encode(),
        owner_key,
        purpose="update-url",
        job_id=job_id,
        round=round,
    )
    m = result.metrics
    return codec.update_note(
        sha256=sha, size=len(result.weights), sealed_url=sealed_url,
        samples=m.samples, loss=m.loss, accuracy=m.accuracy, seconds=m.seconds,
        cipher_sha256=cipher_sha, sealed_key=sealed_key,
    )
