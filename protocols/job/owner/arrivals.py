"""What arrives in a round: trainers' announcements, and the updates they name.

An announcement on the job's topic is verified and its sealed URL (and key) opened
(:func:`parse_announcement`); the update is then fetched by the URL the owner issued,
decrypted, and checked (:func:`check_update`), and the verdict goes to the round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio
from libp2p.crypto.keys import PrivateKey

from distro_errors import DistroError
from protocols.envelope import ReplayGuard
from protocols.errors import EnvelopeError, SealError
from protocols.job import assess, codec, compute, objects
from protocols.job.codec import Kind
from protocols.job.owner.config import LiveJob, OwnerEnv
from protocols.job.owner.prepare import JobData
from protocols.job.records import Checked, Duplicate, RoundEvent, Update, Verdict
from protocols.seal import unseal
from storage import crypto

log = logging.getLogger("distro_train.owner")


@dataclass
class RoundCtx:
    """What the tasks of one round share."""

    live: LiveJob
    data: JobData
    number: int
    model_url: str
    expiry_s: int
    send: trio.MemorySendChannel[RoundEvent]
    announced: dict[str, Update] = field(default_factory=dict)
    updates: dict[tuple[str, int], Update] = field(default_factory=dict)
    issued: dict[tuple[str, int], str] = field(default_factory=dict)
    unenforced: dict[tuple[str, int], str] = field(default_factory=dict)


def parse_announcement(
    live: LiveJob, data: bytes, replay: ReplayGuard, private_key: PrivateKey
) -> Update | str:
    """The update one announcement on ``live``'s topic names, or why it is dropped.

    "" (ignore, charge nobody) for a verified message of another kind.
    """
    try:
        msg = codec.decode(data, codec.TOPIC_KINDS, replay=replay)
    except EnvelopeError as exc:
        # Unverified bytes may carry anyone's key: they charge nobody.
        return exc.reason
    if msg.kind != Kind.UPDATE:
        return ""
    rnd, peer = live.rnd, msg.sender.to_base58()
    if msg.job_id != live.job_id or msg.round != live.round_no or rnd is None:
        return "wrong_round"
    if peer not in rnd.pending_peers():
        return "not_holder"
    try:
        note = codec.parse_update(msg)
        url = unseal(
            note.sealed_url,
            private_key,
            purpose="update-url",
            job_id=live.job_id,
            round=msg.round,
        ).decode()
        if bool(note.sealed_key) != (live.job_key is not None):
            # An encrypted job takes encrypted updates only (and a clear one clear).
            return "wrong_encryption"
        secret = b""
        if note.sealed_key:
            secret = unseal(
                note.sealed_key,
                private_key,
                purpose=objects.UPDATE_KEY_PURPOSE,
                job_id=live.job_id,
                round=msg.round,
            )
            if len(secret) != objects.KEY_BYTES:
                return "bad_seal"
    except codec.BodyError as exc:
        return exc.reason
    except (SealError, UnicodeDecodeError):
        return "bad_seal"
    update = Update(peer, note.sha256, url, note.train_seconds)
    update.cipher_sha256, update.secret = note.cipher_sha256, secret
    return update


async def check_update(env: OwnerEnv, ctx: RoundCtx, update: Update) -> None:
    """Fetch ``update`` by its issued URL, open and check it; send the ``Checked`` verdict."""
    from storage import transfer  # httpx only when an update arrives

    live, reason = ctx.live, "wrong_url"
    twins = {u.peer for u in ctx.updates.values()
             if u.sha256 == update.sha256 and u.slot != update.slot}
    if twins and update.sha256 not in live.past_updates:
        # Another task's bytes: tasks differ in data and nonce, so one of them
        # copied; each is compared with the owner's re-run (docs/verification.md).
        await ctx.send.send(Duplicate((*sorted(twins), update.peer)))
    if update.sha256 in live.past_updates:
        # Bytes an earlier round already saw: an old update sent again.
        reason = "replayed"
    elif update.url == ctx.issued.get(update.key):
        try:
            key = ctx.unenforced.get(update.key)
            if key:
                # The server did not enforce the upload's size: check, and delete
                # an oversize object, before fetching anything.
                store = await env.get_store()
                await trio.to_thread.run_sync(
                    store.check_upload, key, env.cfg.max_update_bytes
                )
            data = await transfer.fetch(
                update.url,
                sha256=update.cipher_sha256 or update.sha256,
                max_bytes=env.cfg.max_update_bytes,
                client=env.http.get(),
            )
            env.stats.bytes_in += len(data)
            if update.secret:
                data = await trio.to_thread.run_sync(
                    open_update, live, ctx.number, update, data
                )
            reason = await trio.to_thread.run_sync(
                assess.check_update, ctx.data.prepared, live.spec, ctx.data.model, data
            )
            update.data = data if not reason else b""
        except DistroError as exc:
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - a peer's bytes must never end the round
            log.warning(
                "job %s: checking update %s failed: %r", live.job_id, update.sha256, exc
            )
            reason = "error"
    update.verdict = Verdict.REJECTED if reason else Verdict.CHECKED
    update.reason = reason
    env.stats.updates["rejected" if reason else "checked", reason] += 1
    if reason:
        log.info(
            "job %s round %d: update %s from %s rejected: %s",
            live.job_id,
            ctx.number,
            update.sha256[:12],
            update.peer,
            reason,
        )
    await ctx.send.send(Checked(update))


def open_update(live: LiveJob, round_no: int, update: Update, sealed: bytes) -> bytes:
    """Decrypt a fetched update and check it is the plaintext announced (blocking).

    Raises:
        storage.crypto.DecryptError: it does not decrypt as this trainer's update
            of this round (``undecryptable``).
        storage.errors.HashMismatch: the plaintext is not what was announced.
    """
    from storage.errors import HashMismatch

    oid = objects.update_id(live.job_id, round_no, update.peer)
    plain = crypto.decrypt(update.secret, oid, sealed)
    actual = compute.sha256(plain)
    if actual != update.sha256:
        raise HashMismatch(update.url, update.sha256, actual)
    return plain
