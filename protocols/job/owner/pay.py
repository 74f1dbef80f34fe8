"""Paying a closed round: receipts for verified work, forfeits, the round log, delivery.

Only *verified* work is paid (docs/ledger.md, "What is paid"): an update the round
used (verdict ``accepted``, late ones included when they were aggregated) that was
reproduced by a replica or the owner's re-run, or that comes from a trainer out of
quarantine (its work reproduced before, and every task of it open to unannounced
spot checks), from a trainer not caught cheating in the job. Rejected
(``no_progress`` and every other reason), outvoted, late-and-unused and
quarantined-unverified updates earn nothing (the latter also when
``quarantine_weight`` gives them some weight).

A trainer caught cheating (``live.cheaters``) that holds receipts of the job is
forfeited on the ledger: receipts vest only when the job ends, so the pay of its
earlier rounds is never redeemed and goes back to the owner with the refund.

Each trainer paid in a round gets all its receipts of the job so far by a
``job.receipts`` request (it keeps each once), so a delivery lost in one round is
made good in the next; the owner keeps every receipt it signed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio
from libp2p.peer.id import ID

from protocols.job import PROTOCOL_ID, codec
from protocols.job.codec import Kind
from protocols.job.owner.config import LiveJob, OwnerEnv
from protocols.job.records import Update

if TYPE_CHECKING:
    from ledger.receipts import Receipt
    from protocols.market.settle import RoundSettled, Settlement

log = logging.getLogger("distro_train.owner")
MAX_RECEIPTS = 1024
"""Most receipts one ``job.receipts`` message carries (the trainer's limit too)."""


NO_EVIDENCE = "00" * 32
"""The evidence of a forfeit whose cheating update this round did not see."""


def payable(live: LiveJob, used: Sequence[Update]) -> list[Update]:
    """The used updates that are paid: verified work of trainers not caught cheating.

    Verified: reproduced (``Update.verified``), or from a trainer out of quarantine.
    """
    return [u for u in used if u.peer not in live.cheaters
            and (u.verified or u.peer not in live.quarantine)]


async def forfeit_cheaters(market: Settlement, live: LiveJob,
                           caught: Sequence[Update]) -> list[str]:
    """Forfeit, on the ledger, every caught cheater that holds receipts of the job.

    Returns the wallet addresses whose forfeit is on the ledger now.
    """
    evidence = {u.peer: u.sha256 for u in caught}
    done = []
    for peer in sorted(live.cheaters):
        offer = live.offers.get(peer)
        address = offer.address if offer else ""
        if not address or address in market.forfeits(live.job_id).done:
            continue
        if not market.owes(live.job_id, address):
            continue  # nothing to take back: it was never paid in this job
        if await market.forfeit(live.job_id, address, evidence.get(peer, NO_EVIDENCE)):
            done.append(address)
            log.info("job %s: %s caught cheating (%s): its receipts of the job are forfeited",
                     live.job_id, peer, live.cheaters[peer])
    return done


async def pay_round(
    env: OwnerEnv, live: LiveJob, number: int, used: list[Update], *, parent: str, model: str,
    caught: Sequence[Update] = (),
) -> RoundSettled | None:
    """Settle round ``number`` of a paid job and hand each trainer its receipts.

    ``used`` are the updates the round aggregated (the round log's Merkle root
    covers them all); only :func:`payable` ones earn a receipt. ``caught`` are the
    round's updates judged cheats (the evidence of a forfeit).
    """
    market = env.market
    if market is None or not live.spec.price.paid:
        return None
    settled, peer_of = await settle(market, live, number, used, parent=parent, model=model,
                                    caught=caught)
    async with trio.open_nursery() as nursery:
        for address in {r.trainer for r in settled.receipts}:
            # All of the trainer's receipts so far: a lost delivery is made good now.
            receipts, proofs = market.receipts_for(live.job_id, address, MAX_RECEIPTS)
            nursery.start_soon(_deliver, env, live.job_id, number, peer_of[address], receipts,
                               proofs)
    log.info("job %s round %d: price %d wei, %d receipts, ledger %.3fs gas %d", live.job_id,
             number, settled.price, len(settled.receipts), settled.ledger_s, settled.gas_used)
    return settled


async def settle(
    market: Settlement, live: LiveJob, number: int, used: Sequence[Update], *, parent: str,
    model: str, caught: Sequence[Update] = (),
) -> tuple[RoundSettled, dict[str, str]]:
    """Forfeit new cheaters, sign the round's receipts, commit it: (settled, peer by address)."""
    await forfeit_cheaters(market, live, caught)
    rows: list[tuple[str, str, str, int]] = []
    asks: list[int] = []
    peer_of: dict[str, str] = {}
    paid_ids = {id(u) for u in payable(live, used)}
    for u in used:
        offer = live.offers.get(u.peer)
        # Every used update is in the round's Merkle root; an unpaid one has no payee.
        address = offer.address if offer and id(u) in paid_ids else ""
        rows.append((u.peer, address, u.sha256, u.samples))
        if offer is not None and address:
            asks.append(offer.ask)
            peer_of[address] = u.peer
    settled = await market.settle_round(live.job_id, number, rows, asks, model=model,
                                        parent=parent)
    return settled, peer_of


async def _deliver(
    env: OwnerEnv, job_id: str, number: int, peer: str, receipts: list[Receipt],
    proofs: dict[str, list[bytes]],
) -> None:
    timeout = env.cfg.request_timeout_s
    body = codec.receipts(receipts, proofs)
    # Retries help against quick failures only: the whole delivery never holds the
    # round's close longer than one request timeout.
    with trio.move_on_after(timeout):
        for attempt in range(1, env.cfg.receipt_attempts + 1):
            # A fresh envelope each time: the trainer's replay guard refuses a resent one.
            wire = codec.encode(env.node.private_key, Kind.RECEIPTS, body, job_id=job_id,
                                round=number)
            try:
                reply = await env.node.request(ID.from_base58(peer), PROTOCOL_ID, wire, timeout)
                ack = codec.decode(reply, frozenset({Kind.ACK}), sender=ID.from_base58(peer))
            except Exception as exc:  # noqa: BLE001 - a trainer unreachable keeps nothing
                log.info("job %s round %d: receipts to %s not delivered (attempt %d): %r",
                         job_id, number, peer, attempt, exc)
                await trio.sleep(env.cfg.receipt_retry_s * attempt)
                continue
            if not getattr(ack.body, "ok", False):
                log.info("job %s round %d: %s refused its receipts: %s", job_id, number, peer,
                         getattr(ack.body, "reason", ""))
            return


async def end_on_ledger(market: Settlement, job_id: str, timeout_s: float) -> None:
    """End a cancelled or failed paid job on the ledger, as a finished one is.

    The receipts already signed vest (that work was done and verified) and the
    refund's grace period starts; without this the deposit stayed locked until the
    contract's vesting time. Shielded, bounded by ``timeout_s``; ledger trouble is
    logged (``Settlement.finish``), and ``distro-train refund`` can end the job later.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(timeout_s):
        try:
            await market.finish(job_id)
        except Exception as exc:  # noqa: BLE001 - the job is over either way
            log.warning("job %s: ending it on the ledger failed: %r", job_id, exc)
