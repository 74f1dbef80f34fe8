"""The market contract on a real anvil node: escrow, receipts, vesting, forfeits, refund,
round log."""

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
    with pytest.raises(TxRefused, match="not vested"):  # held until the job ends
        redeemer.redeem(batch)
    assert not market.vested(job)
    market.end_job(job)
    assert market.vested(job)
    before = redeemer.balance(trainer.address)
    tx = redeemer.redeem(batch)
    assert redeemer.balance(trainer.address) == before + ETH * 3 // 4 - redeemer.fees([tx.tx_hash])
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
    Market(chain.rpc_url, chain.contract, owner.key).end_job(job)
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
    market.end_job(job)
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
    with pytest.raises(TxRefused, match="job not ended"):
        market.refund(job)
    market.end_job(job)
    Market(chain.rpc_url, chain.contract, trainer.key).redeem(
        [sign(chain, owner, job, 1, trainer, h("r"), ETH // 5)])
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
                 lambda: intruder.refund(job),
                 lambda: intruder.forfeit(job, other.address, h("e"))):
        with pytest.raises(TxRefused, match="not the job owner"):
            call()


def test_forfeited_trainer_keeps_nothing_and_the_owner_gets_it_back(chain: ChainInfo) -> None:
    owner, honest, cheat = (funded_wallet(chain) for _ in range(3))
    job = job_id()
    market = Market(chain.rpc_url, chain.contract, owner.key)
    market.deposit(job, ETH)
    # Rounds 1 and 2 paid both; in round 3 the cheat is caught.
    fair = [sign(chain, owner, job, r, honest, h(f"h{r}"), ETH // 10) for r in (1, 2)]
    owed = [sign(chain, owner, job, r, cheat, h(f"c{r}"), ETH // 10) for r in (1, 2)]
    market.forfeit(job, cheat.address, h("c3"))
    assert market.forfeited(job, cheat.address) and not market.forfeited(job, honest.address)
    logs = market.contract.events.Forfeited().get_logs(from_block=0)
    assert [(x.args.trainer, x.args.evidence.hex()) for x in logs
            if x.args.job == receipts.job_key(job)] == [(cheat.address, h("c3"))]
    market.end_job(job)
    with pytest.raises(TxRefused, match="already vested"):  # the end settles who is paid
        market.forfeit(job, honest.address, h("h2"))
    Market(chain.rpc_url, chain.contract, honest.key).redeem(fair)
    with pytest.raises(TxRefused, match="trainer forfeited"):
        Market(chain.rpc_url, chain.contract, cheat.key).redeem(owed)
    with pytest.raises(TxRefused, match="trainer forfeited"):  # nor hidden in a batch
        Market(chain.rpc_url, chain.contract, honest.key).redeem(owed[:1])
    advance_time(chain.rpc_url, market.grace_s() + 1)
    before = market.balance(owner.address)
    tx = market.refund(job)
    price = int(market.w3.eth.get_transaction_receipt(tx.tx_hash)["effectiveGasPrice"])
    # The refund is the deposit minus the honest pay: the forfeited receipts came back.
    assert market.balance(owner.address) == before + ETH * 8 // 10 - tx.gas_used * price


def test_receipts_vest_without_the_owner_after_the_hold(chain: ChainInfo) -> None:
    owner, trainer = funded_wallet(chain), funded_wallet(chain)
    job = job_id()
    market = Market(chain.rpc_url, chain.contract, owner.key)
    tx = market.deposit(job, ETH)
    deposited_at = int(market.w3.eth.get_block(tx.block)["timestamp"])
    assert market.job(job).vest_at == deposited_at + market.vest_s()
    paid = [sign(chain, owner, job, 1, trainer, h("v"), ETH // 10)]
    redeemer = Market(chain.rpc_url, chain.contract, trainer.key)
    with pytest.raises(TxRefused, match="not vested"):
        redeemer.redeem(paid)
    # The owner vanished without ending the job: the hold runs out by itself.
    advance_time(chain.rpc_url, market.vest_s() + 1)
    assert market.vested(job)
    redeemer.redeem(paid)
    assert market.job(job).paid == ETH // 10
    with pytest.raises(TxRefused, match="already vested"):
        market.forfeit(job, trainer.address, h("v"))


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
