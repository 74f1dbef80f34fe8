"""Paying a closed round: receipts for the used updates, the round log, delivery.

Only updates the round *used* are paid (verdict ``accepted``, late ones included
when they were aggregated); rejected (``no_progress`` and every other reason),
outvoted, and late-and-unused updates earn nothing, and where the job verifies
work (docs/verification.md) an update caught by a check is rejected, so unpaid.
Each trainer paid in a round gets all its receipts of the job so far by a
``job.receipts`` request (it keeps each once), so a delivery lost in one round is
made good in the next; the owner keeps every receipt it signed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from libp2p.peer.id import ID

from protocols.job import PROTOCOL_ID, codec
from protocols.job.codec import Kind
from protocols.job.owner.config import LiveJob, OwnerEnv
from protocols.job.records import Update

if TYPE_CHECKING:
    from ledger.receipts import Receipt
    from protocols.market.settle import RoundSettled

log = logging.getLogger("distro_train.owner")
MAX_RECEIPTS = 1024
"""Most receipts one ``job.receipts`` message carries (the trainer's limit too)."""
DELIVERY_ATTEMPTS = 3
DELIVERY_RETRY_S = 1.0
"""Pause before the next attempt, times the attempt number."""


async def pay_round(
    env: OwnerEnv, live: LiveJob, number: int, used: list[Update], *, parent: str, model: str
) -> RoundSettled | None:
    """Settle round ``number`` of a paid job and hand each trainer its receipts."""
    market = env.market
    if market is None or not live.spec.price.paid:
        return None
    rows: list[tuple[str, str, str, int]] = []
    asks: list[int] = []
    peer_of: dict[str, str] = {}
    for u in used:
        offer = live.offers.get(u.peer)
        address = offer.address if offer else ""
        rows.append((u.peer, address, u.sha256, u.samples))
        if offer is not None and address:
            asks.append(offer.ask)
            peer_of[address] = u.peer
    settled = await market.settle_round(live.job_id, number, rows, asks, model=model,
                                        parent=parent)
    paid = {r.trainer for r in settled.receipts}
    async with trio.open_nursery() as nursery:
        for address in paid:
            # All of the trainer's receipts so far: a lost delivery is made good now.
            receipts, proofs = market.receipts_for(live.job_id, address, MAX_RECEIPTS)
            nursery.start_soon(_deliver, env, live.job_id, number, peer_of[address], receipts,
                               proofs)
    log.info("job %s round %d: price %d wei, %d receipts, ledger %.3fs gas %d", live.job_id,
             number, settled.price, len(settled.receipts), settled.ledger_s, settled.gas_used)
    return settled


async def _deliver(
    env: OwnerEnv, job_id: str, number: int, peer: str, receipts: list[Receipt],
    proofs: dict[str, list[bytes]],
) -> None:
    timeout = env.cfg.request_timeout_s
    body = codec.receipts(receipts, proofs)
    # Retries help against quick failures only: the whole delivery never holds the
    # round's close longer than one request timeout.
    with trio.move_on_after(timeout):
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            # A fresh envelope each time: the trainer's replay guard refuses a resent one.
            wire = codec.encode(env.node.private_key, Kind.RECEIPTS, body, job_id=job_id,
                                round=number)
            try:
                reply = await env.node.request(ID.from_base58(peer), PROTOCOL_ID, wire, timeout)
                ack = codec.decode(reply, frozenset({Kind.ACK}), sender=ID.from_base58(peer))
            except Exception as exc:  # noqa: BLE001 - a trainer unreachable keeps nothing
                log.info("job %s round %d: receipts to %s not delivered (attempt %d): %r",
                         job_id, number, peer, attempt, exc)
                await trio.sleep(DELIVERY_RETRY_S * attempt)
                continue
            if not getattr(ack.body, "ok", False):
                log.info("job %s round %d: %s refused its receipts: %s", job_id, number, peer,
                         getattr(ack.body, "reason", ""))
            return
