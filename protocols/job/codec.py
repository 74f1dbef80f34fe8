"""Every job message, built and parsed in one place: kinds, bodies and their checks.

The owner and the trainer never construct protobuf bodies or name message kinds
themselves; they call the functions here. Outbound: ``encode`` signs a body as a
message of a :class:`Kind`. Inbound: ``decode`` verifies the envelope, then the
``parse_*`` functions range-check what a body claims, so a NaN, a negative time or
an absurd count is refused with a reason code before anything acts on it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from google.protobuf.message import Message
from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

from protocols.envelope import Opened, ReplayGuard, open_message, seal_message
from protocols.errors import ProtocolError
from protocols.pb import distro_pb2 as pb

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_TRAIN_SECONDS = 7 * 24 * 3600.0
"""No task runs for a week: a larger figure in an announcement is refused."""
MAX_UPDATE_BYTES_CLAIM = 1 << 40


class Kind(StrEnum):
    """The job protocol's message kinds (the envelope's ``kind``)."""

    ANNOUNCE = "job.announce"
    OFFER = "job.offer"
    ASSIGN = "job.assign"
    ACK = "job.ack"
    UPDATE = "job.update"
    ROUND = "job.round"
    CANCEL = "job.cancel"
    RECEIPTS = "job.receipts"


REQUEST_KINDS = frozenset({Kind.OFFER, Kind.ASSIGN, Kind.ACK, Kind.RECEIPTS, Kind.CANCEL})
"""Kinds that travel as requests on the job protocol's streams."""
TOPIC_KINDS = frozenset({Kind.UPDATE, Kind.ROUND})
"""Kinds that travel on a job's own topic."""


class BodyError(ProtocolError):
    """A verified message whose body claims something impossible.

    Attributes:
        reason: ``bad_sha256``, ``bad_number`` or ``bad_field``.
        field: The body field at fault.
    """

    def __init__(self, reason: str, field: str) -> None:
        super().__init__(f"{reason}: {field}")
        self.reason = reason
        self.field = field


def encode(
    key: PrivateKey, kind: Kind, body: Message, *, job_id: str = "", round: int = 0
) -> bytes:
    """Sign ``body`` as a ``kind`` message (see ``protocols.envelope.seal_message``)."""
    return seal_message(key, str(kind), body, job_id=job_id, round=round)


def decode(
    data: bytes,
    kinds: frozenset[Kind],
    *,
    sender: ID | None = None,
    replay: ReplayGuard | None = None,
) -> Opened:
    """Verify wire bytes as one of ``kinds`` (raises ``EnvelopeError``)."""
    return open_message(
        data,
        expected_kinds=frozenset(str(k) for k in kinds),
        expected_sender=sender,
        replay=replay,
    )


def ack(ok: bool, reason: str = "") -> pb.Ack:
    """An answer: ``ok``, or a refusal with a reason code (never error text)."""
    return pb.Ack(ok=ok, reason=reason)


@dataclass(frozen=True)
class UpdateNote:
    """What a trainer's update announcement claims, range-checked.

    Only the hashes and the sealed URL and key are acted on; the figures are shown
    in status and logs, never used as weights. An encrypted update has a
    ``cipher_sha256`` (of the stored bytes) and a ``sealed_key``; ``sha256`` is then
    its plaintext's. Both are "" / b"" for an update stored in the clear.
    """

    sha256: str
    size: int
    train_seconds: float
    train_loss: float
    train_accuracy: float
    sealed_url: bytes
    cipher_sha256: str = ""
    sealed_key: bytes = b""


def update_note(
    *,
    sha256: str,
    size: int,
    samples: int,
    loss: float,
    accuracy: float,
    seconds: float,
    sealed_url: bytes,
    cipher_sha256: str = "",
    sealed_key: bytes = b"",
) -> pb.UpdateAnnounce:
    """The body of a trainer's update announcement (encrypted: with its key sealed)."""
    return pb.UpdateAnnounce(
        sha256=sha256,
        size=size,
        samples=samples,
        train_loss=loss if math.isfinite(loss) else 1e30,
        train_accuracy=accuracy,
        train_seconds=seconds,
        sealed_url=sealed_url,
        cipher_sha256=cipher_sha256,
        sealed_key=sealed_key,
    )


def parse_update(msg: Opened) -> UpdateNote:
    """Check a ``job.update`` body; raises :class:`BodyError` on any impossible figure."""
    body = msg.body
    if not isinstance(body, pb.UpdateAnnounce):
        raise BodyError("bad_field", "body")
    if not SHA256_HEX.fullmatch(body.sha256):
        raise BodyError("bad_sha256", "sha256")
    _number(body.train_seconds, 0.0, MAX_TRAIN_SECONDS, "train_seconds")
    _number(body.train_accuracy, 0.0, 1.0, "train_accuracy")
    _number(body.train_loss, 0.0, 1e30, "train_loss")
    _number(body.size, 1, MAX_UPDATE_BYTES_CLAIM, "size")
    if not body.sealed_url:
        raise BodyError("bad_field", "sealed_url")
    if body.cipher_sha256 and not SHA256_HEX.fullmatch(body.cipher_sha256):
        raise BodyError("bad_sha256", "cipher_sha256")
    if bool(body.cipher_sha256) != bool(body.sealed_key):
        raise BodyError("bad_field", "sealed_key")
    return UpdateNote(
        body.sha256,
        body.size,
        float(body.train_seconds),
        float(body.train_loss),
        float(body.train_accuracy),
        body.sealed_url,
        body.cipher_sha256,
        body.sealed_key,
    )


@dataclass(frozen=True)
class OfferNote:
    """What a trainer says about itself when offering, range-checked."""

    health: float
    free_slots: int
    cpu_count: int
    ask: int = 0  # wei per price unit (docs/ledger.md)
    wallet_address: str = ""
    wallet_binding: bytes = b""


def offer(*, health: float, free_slots: int, cpu_count: int, **market: Any) -> pb.Offer:
    """The body of a trainer's offer; ``market``: ask, wallet_address, wallet_binding."""
    return pb.Offer(health=health, free_slots=free_slots, cpu_count=cpu_count, **market)


def parse_offer(msg: Opened) -> OfferNote:
    """Check a ``job.offer`` body; raises :class:`BodyError`."""
    body = msg.body
    if not isinstance(body, pb.Offer):
        raise BodyError("bad_field", "body")
    _number(body.health, 0.0, 100.0, "health")
    _number(body.free_slots, 0, 1024, "free_slots")
    _number(body.cpu_count, 1, 4096, "cpu_count")
    ask = 0
    if body.ask:
        if not (body.ask.isdigit() and len(body.ask) <= 78):
            raise BodyError("bad_number", "ask")
        ask = int(body.ask)
    if len(body.wallet_address) > 42 or len(body.wallet_binding) > 65:
        raise BodyError("bad_field", "wallet")
    return OfferNote(float(body.health), int(body.free_slots), int(body.cpu_count), ask,
                     body.wallet_address, bytes(body.wallet_binding))


def parse_refusal(msg: Opened) -> str:
    """The reason code of a trainer's refusal (``job.ack`` with ok false), cut to 64 chars."""
    body = msg.body
    if not isinstance(body, pb.Ack) or body.ok:
        raise BodyError("bad_field", "ok")
    return "".join(c for c in body.reason[:64] if c.isalnum() or c in "_-") or "unknown"


def round_result(
    *,
    model_sha256: str,
    used: list[str],
    rejected: list[str],
    accuracy: float,
    loss: float,
    final: bool,
) -> pb.RoundResult:
    """The body the owner publishes when a round closes."""
    return pb.RoundResult(
        model_sha256=model_sha256,
        used_updates=used,
        rejected_updates=rejected,
        test_accuracy=accuracy,
        test_loss=loss,
        final=final,
    )


def receipts(signed: list[Any], proofs: dict[str, list[bytes]]) -> pb.Receipts:
    """A trainer's receipts (``ledger.receipts.Receipt``) for a round, with proofs.

    ``proofs`` maps an update's sha256 to its Merkle siblings up to the round's root.
    """
    return pb.Receipts(receipts=[
        pb.Receipt(round=r.round, trainer=r.trainer, update=r.update, amount=str(r.amount),
                   signature=r.signature, merkle_proof=proofs.get(r.update, []))
        for r in signed])


def cancel(reason: str) -> pb.JobCancel:
    """The body the owner sends its job's trainers when it cancels the job."""
    return pb.JobCancel(reason=reason)


def _number(value: float, low: float, high: float, field: str) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise BodyError("bad_number", field)
