"""The trainer's side of the market: its ask, its receipts, redeeming them.

Receipts arrive from a job's owner after each round (``job.receipts``). Each is
checked before it is kept in ``D/market/earnings.json``: it pays this trainer's
wallet, it is signed by the wallet the owner named in its (Ed25519-signed)
announcement, for that announcement's chain and contract. The trainer redeems
them itself, in batches, owner online or not, once they have vested: when the
owner has ended the job, or when the contract's hold (``VEST``) has run out. Until
then the owner may forfeit a trainer it caught cheating, whose receipts of the
job then never redeem (docs/ledger.md).
"""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from ledger import receipts as rc
from ledger.client import MAX_BATCH, Market
from ledger.config import LedgerSettings
from ledger.errors import LedgerError
from ledger.wallet import Wallet
from protocols.market.terms import AskRule, ask_for
from protocols.pb import distro_pb2 as pb

log = logging.getLogger("distro_train.market")

#: Most receipts one message may carry, and most kept per trainer.
MAX_RECEIPTS_PER_MESSAGE = 1024
MAX_KEPT = 100_000


@dataclass(frozen=True)
class Kept:
    """A receipt with the chain and contract it pays on."""

    receipt: rc.Receipt
    chain_id: int
    contract: str
    proof: tuple[bytes, ...] = ()  # Merkle siblings up to the round's committed root

    def key(self) -> tuple[str, int, str]:
        """What makes two receipts the same one."""
        return (self.receipt.job_id, self.receipt.round, self.receipt.update)


class TrainerMarket:
    """A trainer's wallet, ask rule and receipts book.

    Args:
        rule: the ``[market]`` table.
        wallet: this daemon's wallet.
        ledger: the ``[ledger]`` table (``enabled`` False: unpaid jobs only).
        market: the contract client (None without a ledger).
        data_dir: the daemon's data dir.
    """

    def __init__(self, rule: AskRule, wallet: Wallet, ledger: LedgerSettings,
                 market: Market | None, data_dir: Path) -> None:
        self.rule, self.wallet, self.ledger, self.market = rule, wallet, ledger, market
        self.path = Path(data_dir) / "market" / "earnings.json"
        self.kept: dict[tuple[str, int, str], Kept] = {}
        if self.path.exists():
            for body in json.loads(self.path.read_text()):
                k = Kept(rc.Receipt.from_json(body["receipt"]), int(body["chain_id"]),
                         str(body["contract"]),
                         tuple(bytes.fromhex(h) for h in body.get("proof", [])))
                self.kept[k.key()] = k

    def accepts(self, ann: pb.JobAnnounce) -> bool:
        """Whether to offer for ``ann``: unpaid, or paid on our ledger at an acceptable price."""
        if not ann.price_budget:
            return True
        if self.market is None or ann.ledger_chain_id != self.ledger.chain_id:
            return False
        if ann.ledger_contract.lower() != self.market.address.lower():
            return False
        try:
            return int(ann.price_max) >= self.rule.min_price
        except ValueError:
            return False

    def escrowed(self, job_id: str, ann: pb.JobAnnounce) -> bool:
        """Whether the ledger escrows ``job_id`` for the announced owner, with budget left.

        Blocking (one contract read); False when the ledger cannot be read.
        """
        if self.market is None:
            return False
        try:
            state = self.market.job(job_id)
        except LedgerError as exc:
            log.info("job %s: escrow unreadable: %s", job_id, exc.detail)
            return False
        return (state.owner.lower() == ann.owner_address.lower() and state.left > 0
                and not state.ended_at)

    def offer_fields(self, peer_id: str, queued: int) -> dict[str, Any]:
        """The offer's market fields: ask, wallet address, binding to ``peer_id``."""
        return {"ask": str(ask_for(self.rule, queued)), "wallet_address": self.wallet.address,
                "wallet_binding": self.wallet.bind(peer_id)}

    def take(self, job_id: str, ann: pb.JobAnnounce, body: pb.Receipts) -> tuple[int, str]:
        """Check and keep the receipts in ``body``; returns ``(kept, refusal reason)``."""
        if not ann.price_budget or not ann.owner_address:
            return 0, "unpaid_job"
        if len(body.receipts) > MAX_RECEIPTS_PER_MESSAGE:
            return 0, "too_many"
        fresh = 0
        for r in body.receipts:
            try:
                receipt = rc.Receipt.from_json({
                    "job_id": job_id, "round": r.round, "trainer": r.trainer,
                    "update": r.update, "amount": r.amount, "signature": r.signature.hex()})
                signer = rc.signer(receipt, chain_id=ann.ledger_chain_id,
                                   contract=ann.ledger_contract)
            except (LedgerError, ValueError) as exc:
                log.info("job %s: malformed receipt refused: %s", job_id, exc)
                return fresh, "bad_receipt"
            if receipt.trainer != self.wallet.address:
                return fresh, "not_my_wallet"
            if signer.lower() != ann.owner_address.lower():
                return fresh, "bad_signature"
            if len(r.merkle_proof) > 64 or any(len(s) != 32 for s in r.merkle_proof):
                return fresh, "bad_proof"
            kept = Kept(receipt, int(ann.ledger_chain_id), ann.ledger_contract,
                        tuple(bytes(s) for s in r.merkle_proof))
            if kept.key() not in self.kept and len(self.kept) < MAX_KEPT:
                self.kept[kept.key()] = kept
                fresh += 1
        if fresh:
            self._save()
        return fresh, ""

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps([{"receipt": k.receipt.to_json(), "chain_id": k.chain_id,
                                    "contract": k.contract, "proof": [s.hex() for s in k.proof]}
                                   for k in self.kept.values()]))
        os.replace(tmp, self.path)

    def _mine(self, job_id: str | None) -> list[Kept]:
        assert self.market is not None
        return [k for k in self.kept.values()
                if (job_id is None or k.receipt.job_id == job_id)
                and k.chain_id == self.ledger.chain_id
                and k.contract.lower() == self.market.address.lower()]

    def _redeemed(self, kept: list[Kept]) -> list[bool]:
        assert self.market is not None
        market = self.market
        return [market.redeemed(rc.digest(k.receipt, chain_id=k.chain_id, contract=k.contract))
                for k in kept]

    def _standing(self, kept: list[Kept]) -> dict[str, tuple[bool, bool]]:
        """Per job of ``kept``: (vested, this wallet forfeited) as the contract says."""
        assert self.market is not None
        market = self.market
        return {j: (market.vested(j), market.forfeited(j, self.wallet.address))
                for j in sorted({k.receipt.job_id for k in kept})}

    def earnings(self, job_id: str | None = None) -> dict[str, Any]:
        """Per job: receipts and wei pending, redeemed and forfeited (blocking: reads the chain).

        ``pending`` counts receipts not yet redeemed and not forfeited; ``vesting``
        those of them that cannot redeem yet (the job has not ended).
        """
        if self.market is None:
            raise LedgerError("no [ledger] configured", reason="no_ledger")
        kept = self._mine(job_id)
        standing = self._standing(kept)
        jobs: dict[str, dict[str, Any]] = defaultdict(
            lambda: {"pending": 0, "pending_wei": 0, "redeemed": 0, "redeemed_wei": 0,
                     "vesting": 0, "forfeited": 0, "forfeited_wei": 0, "proven": 0})
        roots: dict[str, dict[int, bytes]] = {}
        for k, done in zip(kept, self._redeemed(kept), strict=True):
            row = jobs[k.receipt.job_id]
            vested, lost = standing[k.receipt.job_id]
            tag = "redeemed" if done else "forfeited" if lost else "pending"
            row[tag] += 1
            row[tag + "_wei"] += k.receipt.amount
            row["vesting"] += tag == "pending" and not vested
            if k.receipt.job_id not in roots:
                roots[k.receipt.job_id] = {c.round: bytes.fromhex(c.updates_root)
                                           for c in self.market.round_log(k.receipt.job_id)}
            root = roots[k.receipt.job_id].get(k.receipt.round)
            # "proven": the update is in the round's root as committed on the ledger.
            if root is not None and rc.verify_proof(root, k.receipt.update, list(k.proof)):
                row["proven"] += 1
        return {"address": self.wallet.address,
                "jobs": {j: {**v, **{f: str(v[f]) for f in
                                     ("pending_wei", "redeemed_wei", "forfeited_wei")}}
                         for j, v in jobs.items()}}

    def redeem(self, job_id: str | None = None) -> dict[str, Any]:
        """Redeem every vested pending receipt (of ``job_id``), batched (blocking).

        ``held`` counts receipts of jobs not yet vested (redeem them after the job
        ends), ``forfeited`` those of jobs that forfeited this wallet (never).
        """
        if self.market is None:
            raise LedgerError("no [ledger] configured", reason="no_ledger")
        kept = self._mine(job_id)
        standing = self._standing(kept)
        open_ = [k for k, done in zip(kept, self._redeemed(kept), strict=True) if not done]
        lost = [k for k in open_ if standing[k.receipt.job_id][1]]
        held = [k for k in open_ if not any(standing[k.receipt.job_id])]
        pending = [k.receipt for k in open_ if standing[k.receipt.job_id] == (True, False)]
        txs, wei, gas = [], 0, 0
        for i in range(0, len(pending), MAX_BATCH):
            batch = pending[i:i + MAX_BATCH]
            tx = self.market.redeem(batch)
            txs.append(tx.tx_hash)
            wei += sum(r.amount for r in batch)
            gas += tx.gas_used
        return {"redeemed": len(pending), "wei": str(wei), "gas_used": gas, "txs": txs,
                "held": len(held), "forfeited": len(lost),
                "forfeited_wei": str(sum(k.receipt.amount for k in lost))}


async def redeem_async(market: TrainerMarket, job_id: str | None = None) -> dict[str, Any]:
    """``redeem`` off the event loop."""
    return await trio.to_thread.run_sync(market.redeem, job_id)
