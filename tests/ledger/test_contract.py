"""The market contract on a real anvil node: escrow, receipts, refund, round log."""

from __future__ import annotations

import hashlib
import os

import pytest

from ledger import receipts
from ledger.client import Market
from ledger.devchain import ChainInfo, advance_time
from ledger.errors import TxRefused
from ledger.wallet import Wallet

from .conftest import ETH, funded_wallet


def h(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


def job_id() -> str:
    return os.urandom(8).hex()


def sign(chain: ChainInfo, owner: Wallet, job: str, rnd: int, trainer: Wallet,
         update: str, amount: int) -> receipts.Receipt:
    return receipts.sign(owner.key, chain_id=chain.chain_id, contract=chain.contract,
                         job_id=job, round_=rnd, trainer=trainer.address, update=update,
                         amount=amount)


def test_deposit_redeem_pays_exactly_and_refuses_double(chain: ChainInfo) -> None:
    owner, trainer = funded_wallet(chain), funded_wallet(chain)
    market = Market(chain.rpc_url, chain.contract, owner.key)
    job = job_id()
    market.deposit(job, 2 * ETH)
    state = market.job(job)
    assert (state.owner, state.deposit, state.paid) == (owner.address, 2 * ETH, 0)
    batch = [sign(chain, owner, job, 1, trainer, h("a"), ETH // 4),
             sign(chain, owner, job, 1, trainer, h("b"), ETH // 2)]
    redeemer = Market(chain.rpc_url, chain.contract, trainer.key)
    before = redeemer.balance(trainer.address)
    tx = redeemer.redeem(batch)
    gas_cost = tx.gas_used * int(redeemer.w3.eth.get_transaction_receipt(tx.tx_hash)
                                 ["effectiveGasPrice"])
    assert redeemer.balance(trainer.address) == before + ETH * 3 // 4 - gas_cost
    assert market.job(job).paid == ETH * 3 // 4
    for r in batch:
        assert market.redeemed(receipts.digest(r, chain_id=chain.chain_id,
                                               contract=chain.contract))
    with pytest.raises(TxRefused, match="already redeemed"):
        redeemer.redeem(batch[:1])
    assert market.job(job).paid == ETH * 3 // 4


def test_receipt_signed_by_someone_else_is_refused(chain: ChainInfo) -> None:
    owner, trainer, mallory = (funded_wallet(chain) for _ in range(3))
    job = job_id()
    Market(chain.rpc_url, chain.contract, owner.key).deposit(job, ETH)
    forged = sign(chain, mallory, job, 1, trainer, h("x"), ETH // 10)
    with pytest.raises(TxRefused, match="not signed by the job owner"):
        Market(chain.rpc_url, chain.contract, trainer.key).redeem([forged])
    # A receipt whose amount was raised after signing no longer recovers to the owner.
    good = sign(chain, owner, job, 1, trainer, h("x"), ETH // 10)
    raised = receipts.Receipt(**{**good.__dict__, "amount": ETH})
    with pytest.raises(TxRefused, match="not signed by the job owner"):
        Market(chain.rpc_url, chain.contract, trainer.key).redeem([raised])


def test_total_over_the_deposit_is_refused(chain: ChainInfo) -> None:
    owner, trainer = funded_wallet(chain), funded_wallet(chain)
    job = job_id()
    market = Market(chain.rpc_url, chain.contract, owner.key)
    market.deposit(job, ETH)
    redeemer = Market(chain.rpc_url, chain.contract, trainer.key)
    redeemer.redeem([sign(chain, owner, job, 1, trainer, h("1"), ETH * 6 // 10)])
    with pytest.raises(TxRefused, match="over the deposit"):
        redeemer.redeem([sign(chain, owner, job, 2, trainer, h("2"), ETH * 6 // 10)])
    assert market.job(job).paid == ETH * 6 // 10


def test_refund_only_after_end_plus_grace(chain: ChainInfo) -> None:
    owner, trainer = funded_wallet(chain), funded_wallet(chain)
    job = job_id()
    market = Market(chain.rpc_url, chain.contract, owner.key)
    market.deposit(job, ETH)
    Market(chain.rpc_url, chain.contract, trainer.key).redeem(
        [sign(chain, owner, job, 1, trainer, h("r"), ETH // 5)])
    with pytest.raises(TxRefused, match="job not ended"):
        market.refund(job)
    market.end_job(job)
    with pytest.raises(TxRefused, match="grace period not over"):
        market.refund(job)
    # A receipt signed before the end is still redeemable during the grace period.
    Market(chain.rpc_url, chain.contract, trainer.key).redeem(
        [sign(chain, owner, job, 2, trainer, h("s"), ETH // 5)])
    advance_time(chain.rpc_url, market.grace_s() + 1)
    before = market.balance(owner.address)
    tx = market.refund(job)
    price = int(market.w3.eth.get_transaction_receipt(tx.tx_hash)["effectiveGasPrice"])
    assert market.balance(owner.address) == before + ETH * 3 // 5 - tx.gas_used * price
    with pytest.raises(TxRefused, match="already refunded"):
        market.refund(job)
    with pytest.raises(TxRefused, match="job refunded"):
        Market(chain.rpc_url, chain.contract, trainer.key).redeem(
            [sign(chain, owner, job, 3, trainer, h("t"), 1)])


def test_only_the_owner_refunds_ends_or_tops_up(chain: ChainInfo) -> None:
    owner, other = funded_wallet(chain), funded_wallet(chain)
    job = job_id()
    Market(chain.rpc_url, chain.contract, owner.key).deposit(job, ETH)
    intruder = Market(chain.rpc_url, chain.contract, other.key)
    for call in (lambda: intruder.deposit(job, 1), lambda: intruder.end_job(job),
                 lambda: intruder.refund(job)):
        with pytest.raises(TxRefused, match="not the job owner"):
            call()


def test_round_log_is_ordered_and_chained(chain: ChainInfo) -> None:
    owner, other = funded_wallet(chain), funded_wallet(chain)
    job = job_id()
    market = Market(chain.rpc_url, chain.contract, owner.key)
    market.deposit(job, ETH)
    updates = [h(f"u{i}") for i in range(5)]
    root = receipts.merkle_root(updates)
    market.commit_round(job, 1, model=h("m1"), parent=h("m0"), updates_root=root)
    market.commit_round(job, 2, model=h("m2"), parent=h("m1"), updates_root=receipts.ZERO32)
    with pytest.raises(TxRefused, match="parent is not the last model"):
        market.commit_round(job, 3, model=h("m3"), parent=h("m1"), updates_root=root)
    with pytest.raises(TxRefused, match="round not after the last"):
        market.commit_round(job, 2, model=h("m3"), parent=h("m2"), updates_root=root)
    with pytest.raises(TxRefused, match="not the job owner"):
        Market(chain.rpc_url, chain.contract, other.key).commit_round(
            job, 3, model=h("m3"), parent=h("m2"), updates_root=root)
    log = market.round_log(job)
    assert [(c.round, c.model, c.parent) for c in log] == [(1, h("m1"), h("m0")),
                                                           (2, h("m2"), h("m1"))]
    assert bytes.fromhex(log[0].updates_root) == root
    for u in updates:
        assert receipts.verify_proof(root, u, receipts.merkle_proof(updates, u))
    proof0 = receipts.merkle_proof(updates, updates[0])
    assert not receipts.verify_proof(root, h("intruder"), proof0)


def test_receipt_round_trips_json_and_recovers_owner(chain: ChainInfo) -> None:
    owner, trainer = funded_wallet(chain), funded_wallet(chain)
    r = sign(chain, owner, "job", 7, trainer, h("q"), 123)
    back = receipts.Receipt.from_json(r.to_json())
    assert back == r
    assert receipts.signer(back, chain_id=chain.chain_id, contract=chain.contract) == owner.address
    other_chain = receipts.signer(back, chain_id=chain.chain_id + 1, contract=chain.contract)
    assert other_chain != owner.address
