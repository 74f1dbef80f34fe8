"""The one request handler of ``PROTOCOL_ID``: verify, then route by message kind."""

from __future__ import annotations

from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

from protocols.envelope import ReplayGuard
from protocols.errors import EnvelopeError
from protocols.job import codec
from protocols.job.codec import Kind
from protocols.job.owner import Owner
from protocols.job.ports import RequestHandler
from protocols.job.trainer import Trainer


def request_handler(key: PrivateKey, owner: Owner, trainer: Trainer) -> RequestHandler:
    """Answer each request with a signed Ack, routed by its kind.

    Offers and refusals go to the owner; assignments, receipts and cancellations to
    the trainer.

    A request that fails verification (forged, replayed, wrong sender, malformed) is
    answered with ``Ack(ok=False, reason=<envelope reason>)`` and changes nothing.
    """
    replay = ReplayGuard()

    async def on_request(data: bytes, peer: ID) -> bytes:
        try:
            msg = codec.decode(data, codec.REQUEST_KINDS, sender=peer, replay=replay)
        except EnvelopeError as exc:
            return codec.encode(key, Kind.ACK, codec.ack(False, exc.reason))
        if msg.kind == Kind.OFFER:
            ack = await owner.handle_offer(msg)
        elif msg.kind == Kind.ASSIGN:
            ack = await trainer.handle_assign(msg)
        elif msg.kind == Kind.RECEIPTS:
            ack = await trainer.handle_receipts(msg)
        elif msg.kind == Kind.CANCEL:
            ack = trainer.handle_cancel(msg)
        else:
            ack = await owner.handle_refusal(msg)
        return codec.encode(key, Kind.ACK, ack, job_id=msg.job_id, round=msg.round)

    return on_request
