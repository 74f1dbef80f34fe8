"""The one request handler of ``PROTOCOL_ID``: verify, then route by message kind."""

from __future__ import annotations

from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

from protocols.envelope import ReplayGuard, open_message, seal_message
from protocols.errors import EnvelopeError
from protocols.job.owner import Owner
from protocols.job.ports import RequestHandler
from protocols.job.trainer import Trainer
from protocols.pb import distro_pb2 as pb

REQUEST_KINDS = frozenset({"job.offer", "job.assign", "job.ack"})


def request_handler(key: PrivateKey, owner: Owner, trainer: Trainer) -> RequestHandler:
    """Answer offers (owner), assignments (trainer) and refusals (owner) with a signed Ack.

    A request that fails verification (forged, replayed, wrong sender, malformed) is
    answered with ``Ack(ok=False, reason=<envelope reason>)`` and changes nothing.
    """
    replay = ReplayGuard()

    async def on_request(data: bytes, peer: ID) -> bytes:
        try:
            msg = open_message(
                data, expected_kinds=REQUEST_KINDS, expected_sender=peer, replay=replay
            )
        except EnvelopeError as exc:
            return seal_message(key, "job.ack", pb.Ack(ok=False, reason=exc.reason))
        if msg.kind == "job.offer":
            ack = await owner.handle_offer(msg)
        elif msg.kind == "job.assign":
            ack = await trainer.handle_assign(msg)
        else:
            ack = await owner.handle_refusal(msg)
        return seal_message(key, "job.ack", ack, job_id=msg.job_id, round=msg.round)

    return on_request
