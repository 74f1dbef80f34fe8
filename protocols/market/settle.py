"""The owner's side of the market: escrow, receipts, the round log (ledger I/O off the loop).

``Settlement`` is shared by the owner's parts:

- ``open(job_id, terms)`` escrows the budget before the job is announced (only
  the part not yet deposited, so a resumed job deposits nothing twice);
- ``settle_round(...)`` prices the round, signs one EIP-712 receipt per paid update
  (signing is local: a receipt exists even while the chain is unreachable), keeps
  them in ``D/market/<job>.receipts.json``, commits the round (model, parent, Merkle
  root of the used update hashes) to the public log, and returns the receipts to
  hand to each trainer;
- ``forfeit(job_id, address, evidence)`` forfeits a trainer caught cheating: the
  contract holds a job's receipts until the job ends (they *vest*), and a forfeited
  trainer's receipts of the job never redeem, so their amount is refunded to the
  owner; the budget they held is free for later rounds once the forfeit is on
  the ledger. A forfeit the ledger could not take yet is kept in
  ``D/market/<job>.forfeits.json`` and sent again before the job is ended;
- ``finish(job_id)`` declares the job ended (the contract's grace period starts,
  receipts vest; not while a forfeit is still due); ``refund(job_id)`` takes back
  the unpaid rest once the grace period is over.

A ledger error while committing is logged and the commitment kept for the next
round or ``finish`` (commitments must stay in order); it never fails the round.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from ledger import receipts as rc
from ledger.client import JobState, Market, TxResult
from ledger.errors import LedgerError, TxRefused
from ledger.wallet import Wallet
from protocols.market.terms import Payment, PriceTerms, clearing_price, pay_round

log = logging.getLogger("distro_train.market")


@dataclass
class RoundSettled:
    """What one round paid and committed."""

    price: int
    root: bytes
    receipts: list[rc.Receipt]
    proofs: dict[str, list[bytes]] = field(default_factory=dict)  # by update sha256
    gas_used: int = 0
    ledger_s: float = 0.0  # signing receipts and committing the round


@dataclass
class _Pending:
    round: int
    model: str
    parent: str
    root: bytes


@dataclass
class _Forfeits:
    """Trainers forfeited from one job: address -> evidence (sha256 of the cheat)."""

    done: dict[str, str] = field(default_factory=dict)  # on the ledger
    due: dict[str, str] = field(default_factory=dict)  # not yet sent, or the send failed


@dataclass
class _JobBook:
    terms: PriceTerms
    receipts: list[rc.Receipt] = field(default_factory=list)
    proofs: dict[str, list[bytes]] = field(default_factory=dict)  # by update, this run
    pending: list[_Pending] = field(default_factory=list)
    gas_used: int = 0
    commit_gas: int = 0
    ledger_s: float = 0.0
    rounds: int = 0


class Settlement:
    """An owner's market connection.

    Args:
        market: the contract client, holding the owner's wallet key.
        wallet: the owner's wallet.
        chain_id: the chain the contract lives on (in every receipt's domain).
        data_dir: where ``market/<job>.receipts.json`` is kept.
        commit_rounds: whether rounds are committed to the public log.
    """

    def __init__(self, market: Market, wallet: Wallet, chain_id: int, data_dir: Path,
                 *, commit_rounds: bool = True) -> None:
        self.market = market
        self.wallet = wallet
        self.chain_id = chain_id
        self.contract = market.address
        self.dir = Path(data_dir) / "market"
        self.commit_rounds = commit_rounds
        self.books: dict[str, _JobBook] = {}
        self._forfeits: dict[str, _Forfeits] = {}
        self._forfeit_lock = threading.Lock()

    def announce_fields(self, terms: PriceTerms) -> dict[str, Any]:
        """The announcement fields of a job with ``terms`` (empty for an unpaid job)."""
        if not terms.paid:
            return {}
        return {"price_budget": str(terms.budget), "price_max": str(terms.max_price),
                "price_unit": terms.unit, "ledger_chain_id": self.chain_id,
                "ledger_contract": self.contract, "owner_address": self.wallet.address}

    def book(self, job_id: str, terms: PriceTerms) -> _JobBook:
        """The job's accounting, loaded from its receipts file on first use."""
        if job_id not in self.books:
            book = _JobBook(terms)
            path = self._path(job_id)
            if path.exists():
                book.receipts = [rc.Receipt.from_json(r) for r in json.loads(path.read_text())]
            self.books[job_id] = book
        return self.books[job_id]

    def signed_total(self, job_id: str) -> int:
        """Wei promised by the job's receipts so far, less those forfeited on the ledger."""
        book = self.books.get(job_id)
        if book is None:
            return 0
        gone = self.forfeits(job_id).done
        return sum(r.amount for r in book.receipts if r.trainer not in gone)

    def forfeits(self, job_id: str) -> _Forfeits:
        """The job's forfeited trainers, loaded from ``market/<job>.forfeits.json``."""
        if job_id not in self._forfeits:
            path = self.dir / f"{job_id}.forfeits.json"
            body = json.loads(path.read_text()) if path.exists() else {}
            self._forfeits[job_id] = _Forfeits(dict(body.get("done", {})),
                                               dict(body.get("due", {})))
        return self._forfeits[job_id]

    def owes(self, job_id: str, address: str) -> bool:
        """Whether a receipt of ``job_id`` pays ``address`` (so a forfeit takes something)."""
        book = self.books.get(job_id)
        return book is not None and any(r.trainer == address for r in book.receipts)

    async def forfeit(self, job_id: str, address: str, evidence: str) -> bool:
        """Forfeit ``address``'s receipts of ``job_id``; True once it is on the ledger.

        ``evidence`` is the sha256 of the update judged a cheat (public in the
        contract's ``Forfeited`` event). Kept and retried while the ledger fails.
        """
        f = self.forfeits(job_id)
        if address not in f.done:
            f.due.setdefault(address, evidence)
            self._save_forfeits(job_id, f)
        await trio.to_thread.run_sync(self.land_forfeits, job_id)
        return address in f.done

    def land_forfeits(self, job_id: str) -> list[str]:
        """Send ``job_id``'s due forfeits to the ledger (blocking); return those still due.

        One the contract refuses because the job's receipts have already vested can
        never land: it is dropped, with a warning.
        """
        with self._forfeit_lock:
            f = self.forfeits(job_id)
            for address, evidence in list(f.due.items()):
                try:
                    tx = self.market.forfeit(job_id, address, evidence)
                except TxRefused as exc:
                    log.warning("job %s: forfeit of %s refused, dropped: %s", job_id, address,
                                exc.detail)
                    del f.due[address]
                    continue
                except LedgerError as exc:
                    log.warning("job %s: forfeit of %s failed, kept for later: %s", job_id,
                                address, exc.detail)
                    continue
                del f.due[address]
                f.done[address] = evidence
                if job_id in self.books:
                    self.books[job_id].gas_used += tx.gas_used
                log.info("job %s: forfeited %s's receipts (evidence %s, tx %s)", job_id,
                         address, evidence, tx.tx_hash)
            self._save_forfeits(job_id, f)
            return sorted(f.due)

    def receipts_for(self, job_id: str, address: str, limit: int = 1024
                     ) -> tuple[list[rc.Receipt], dict[str, list[bytes]]]:
        """The latest ``limit`` receipts of ``job_id`` paying ``address``, with known proofs.

        Each round re-sends a trainer all its receipts so far, so one lost
        delivery is made good by the next (the trainer keeps each receipt once).
        """
        book = self.books.get(job_id)
        if book is None:
            return [], {}
        mine = [r for r in book.receipts if r.trainer == address][-limit:]
        return mine, {r.update: book.proofs[r.update] for r in mine if r.update in book.proofs}

    def budget_left(self, job_id: str) -> int | None:
        """Budget not yet promised by a receipt (None: not a paid job here)."""
        book = self.books.get(job_id)
        if book is None or not book.terms.paid:
            return None
        return book.terms.budget - self.signed_total(job_id)

    async def open(self, job_id: str, terms: PriceTerms,
                   records: Sequence[Mapping[str, Any]] = ()) -> None:
        """Escrow what ``terms.budget`` lacks on the ledger (raises ``LedgerError``).

        ``records`` are the job store's rounds of a resumed job: the rounds the
        ledger's log lacks (the owner stopped before committing them) are queued,
        in order, to be committed with the next round.
        """
        book = self.book(job_id, terms)
        if not terms.paid:
            return
        if records and self.commit_rounds:
            log_ = await trio.to_thread.run_sync(self.market.round_log, job_id)
            last_round = log_[-1].round if log_ else 0
            parent = log_[-1].model if log_ else ""
            book.pending.clear()
            for rec in records:
                if int(rec["round"]) <= last_round:
                    parent = str(rec["model_sha256"])
                    continue
                used = [str(u) for u in rec.get("used_updates", [])]
                book.pending.append(_Pending(int(rec["round"]), str(rec["model_sha256"]),
                                             parent, rc.merkle_root(used)))
                parent = str(rec["model_sha256"])
        state: JobState = await trio.to_thread.run_sync(self.market.job, job_id)
        if state.owner not in (self.wallet.address, "0x" + "0" * 40):
            raise LedgerError(f"job {job_id} belongs to {state.owner} on the ledger",
                              reason="job_taken")
        missing = terms.budget - state.deposit
        if missing > 0:
            tx = await trio.to_thread.run_sync(self.market.deposit, job_id, missing)
            book.gas_used += tx.gas_used
            log.info("job %s: escrowed %d wei (tx %s)", job_id, missing, tx.tx_hash)

    async def settle_round(
        self,
        job_id: str,
        round_no: int,
        used: Sequence[tuple[str, str, str, int]],
        asks: Sequence[int],
        *,
        model: str,
        parent: str,
    ) -> RoundSettled:
        """Pay and commit one round; ``used`` is ``(peer, address, sha256, samples)``."""
        book = self.books[job_id]
        terms = book.terms
        started = trio.current_time()
        price = clearing_price(asks, terms.max_price) if terms.paid else 0
        left = terms.budget - self.signed_total(job_id)
        payments: list[Payment] = (
            pay_round(used, price=price, unit=terms.unit, left=left) if terms.paid else [])
        signed = [rc.sign(self.wallet.key, chain_id=self.chain_id, contract=self.contract,
                          job_id=job_id, round_=round_no, trainer=p.address, update=p.update,
                          amount=p.amount) for p in payments]
        if signed:
            book.receipts.extend(signed)
            self._save(job_id, book)
        hashes = [sha for _, _, sha, _ in used]
        root = rc.merkle_root(hashes)
        proofs = {p.update: rc.merkle_proof(hashes, p.update) for p in payments}
        book.proofs.update(proofs)
        out = RoundSettled(price=price, root=root, receipts=signed, proofs=proofs)
        if terms.paid and self.commit_rounds:
            book.pending.append(_Pending(round_no, model, parent, root))
            out.gas_used = await self._flush(job_id, book)
        out.ledger_s = trio.current_time() - started
        book.ledger_s += out.ledger_s
        book.rounds += 1
        return out

    async def _flush(self, job_id: str, book: _JobBook) -> int:
        gas = 0
        while book.pending:
            p = book.pending[0]
            try:
                tx: TxResult = await trio.to_thread.run_sync(self._commit, job_id, p)
            except LedgerError as exc:
                log.warning("job %s: committing round %d failed, kept for later: %s",
                            job_id, p.round, exc)
                break
            gas += tx.gas_used
            book.pending.pop(0)
        book.gas_used += gas
        book.commit_gas += gas
        return gas

    def _commit(self, job_id: str, p: _Pending) -> TxResult:
        return self.market.commit_round(job_id, p.round, model=p.model, parent=p.parent,
                                        updates_root=p.root)

    async def finish(self, job_id: str) -> None:
        """Flush pending commitments and end the job on the ledger (paid jobs only).

        A ledger failure here is logged, not raised: the job's work is done and
        paid for by receipts; the owner can end it later (the refund needs it).
        """
        book = self.books.get(job_id)
        if book is None or not book.terms.paid:
            return
        await self._flush(job_id, book)
        due = await trio.to_thread.run_sync(self.land_forfeits, job_id)
        if due:
            # Ending the job vests every receipt: a cheater's would then redeem.
            log.warning("job %s: not ended on the ledger, forfeits still due for %s; "
                        "`distro-train refund %s` retries", job_id, due, job_id)
            return
        try:
            tx = await trio.to_thread.run_sync(self.market.end_job, job_id)
        except LedgerError as exc:
            log.warning("job %s: ending it on the ledger failed: %s", job_id, exc.detail)
            return
        book.gas_used += tx.gas_used
        log.info("job %s: ended on the ledger; %d wei promised in %d receipts", job_id,
                 self.signed_total(job_id), len(book.receipts))

    def status(self, job_id: str) -> dict[str, Any]:
        """Price terms and budget left of one job, for ``jobs.status``."""
        book = self.books.get(job_id)
        if book is None or not book.terms.paid:
            return {}
        f = self.forfeits(job_id)
        lost = sum(r.amount for r in book.receipts if r.trainer in f.done)
        return {"budget": str(book.terms.budget), "max_price": str(book.terms.max_price),
                "unit": book.terms.unit, "promised": str(self.signed_total(job_id)),
                "forfeited": dict(f.done), "forfeited_wei": str(lost),
                "forfeits_due": sorted(f.due),
                "budget_left": str(book.terms.budget - self.signed_total(job_id)),
                "receipts": len(book.receipts), "gas_used": book.gas_used,
                "commit_gas": book.commit_gas, "rounds_settled": book.rounds,
                "ledger_s": round(book.ledger_s, 4)}

    def _path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.receipts.json"

    def _save_forfeits(self, job_id: str, f: _Forfeits) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{job_id}.forfeits.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"done": f.done, "due": f.due}))
        os.replace(tmp, path)

    def _save(self, job_id: str, book: _JobBook) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(job_id)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps([r.to_json() for r in book.receipts]))
        os.replace(tmp, path)
