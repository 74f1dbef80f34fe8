"""The owner's settlement on a real anvil node: escrow once, pay verified work, forfeit
cheaters, commit, resume."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import trio

from ledger import receipts as rc
from ledger.client import Market
from ledger.config import LedgerSettings
from ledger.devchain import ChainInfo
from ledger.wallet import Wallet
from p2pnode.jobstore import JobStore
from protocols.job.owner import Owner, OwnerConfig
from protocols.job.owner.config import LiveJob
from protocols.job.owner.pay import NO_EVIDENCE, forfeit_cheaters, settle
from protocols.job.records import Update
from protocols.job.selection import OfferInfo
from protocols.job.spec import from_mapping
from protocols.market.earnings import Kept, TrainerMarket
from protocols.market.settle import Settlement
from protocols.market.terms import AskRule, PriceTerms
from storage.s3 import S3Store
from tests.conftest import wait_until
from tests.job.memnet import MemNet
from tests.job.test_job_inprocess import SMALL
from tests.s3servers import ServerHandle

from .conftest import ETH, funded_wallet


def h(tag: str) -> str:
    return hashlib.sha256(tag.encode()).hexdigest()


TERMS = PriceTerms(budget=ETH, max_price=ETH // 10, unit="update")


async def test_resumed_job_commits_the_rounds_its_log_lacks(
    chain: ChainInfo, tmp_path: Path
) -> None:
    owner = funded_wallet(chain)
    market = Market(chain.rpc_url, chain.contract, owner.key)
    job = os.urandom(8).hex()
    first = Settlement(market, owner, chain.chain_id, tmp_path)
    await first.open(job, TERMS)
    await first.open(job, TERMS)  # a second open deposits nothing more
    assert market.job(job).deposit == ETH
    used = [("p1", owner.address, h("u1"), 100)]
    paid = await first.settle_round(job, 1, used, [ETH // 20], model=h("m1"), parent=h("m0"))
    assert [r.amount for r in paid.receipts] == [ETH // 20]
    assert rc.verify_proof(paid.root, h("u1"), paid.proofs[h("u1")])
    # The owner recorded round 2 in its job store, then died before committing it.
    records = [
        {"round": 1, "model_sha256": h("m1"), "used_updates": [h("u1")]},
        {"round": 2, "model_sha256": h("m2"), "used_updates": [h("u2"), h("u3")]},
    ]
    resumed = Settlement(market, owner, chain.chain_id, tmp_path)
    await resumed.open(job, TERMS, records)
    assert resumed.signed_total(job) == ETH // 20  # its receipts file survived
    await resumed.settle_round(job, 3, [], [], model=h("m3"), parent=h("m2"))
    log = market.round_log(job)
    assert [(c.round, c.parent, c.model) for c in log] == [
        (1, h("m0"), h("m1")), (2, h("m1"), h("m2")), (3, h("m2"), h("m3"))]
    assert bytes.fromhex(log[1].updates_root) == rc.merkle_root([h("u2"), h("u3")])
    await resumed.finish(job)
    assert market.job(job).ended_at > 0


def _live(job: str, offers: dict[str, Wallet]) -> LiveJob:
    spec = from_mapping({"model": "mlp", "dataset": "digits", "rounds": 3,
                         "price": {"budget": str(ETH), "max_price": str(ETH // 10)}})
    live = LiveJob(job, spec)
    live.offers = {p: OfferInfo(p, 50.0, 1, 1, ask=ETH // 20, address=w.address)
                   for p, w in offers.items()}
    return live


async def test_only_verified_work_is_paid_and_a_caught_cheater_forfeits_it_all(
    chain: ChainInfo, tmp_path: Path
) -> None:
    owner, honest, cheat, newbie = (funded_wallet(chain) for _ in range(4))
    market = Market(chain.rpc_url, chain.contract, owner.key)
    job = os.urandom(8).hex()
    book = Settlement(market, owner, chain.chain_id, tmp_path)
    await book.open(job, TERMS)
    live = _live(job, {"honest": honest, "cheat": cheat, "newbie": newbie})
    live.quarantine = {"newbie": "0 of 1 verified contributions"}
    # Round 1: the cheat still works honestly; the newcomer's update is used with
    # reduced weight (quarantine_weight > 0) but not reproduced: not verified, unpaid.
    r1 = [Update("honest", h("h1"), ""), Update("cheat", h("c1"), ""),
          Update("newbie", h("n1"), "")]
    s1, _ = await settle(book, live, 1, r1, parent=h("m0"), model=h("m1"))
    assert {r.trainer for r in s1.receipts} == {honest.address, cheat.address}
    assert s1.root == rc.merkle_root([h("h1"), h("c1"), h("n1")])  # the log covers all used
    # Round 2: the newcomer's update is reproduced (paid); the cheat is caught.
    live.cheaters["cheat"] = "owner re-run"
    r2 = [Update("honest", h("h2"), ""), Update("newbie", h("n2"), "", verified=True)]
    s2, _ = await settle(book, live, 2, r2, parent=h("m1"), model=h("m2"),
                         caught=[Update("cheat", h("c2"), "", reason="cheated")])
    assert {r.trainer for r in s2.receipts} == {honest.address, newbie.address}
    assert market.forfeited(job, cheat.address)
    assert book.forfeits(job).done == {cheat.address: h("c2")}
    # Its round-1 receipt no longer counts against the budget; the owner gets it back.
    assert book.signed_total(job) == 3 * (ETH // 20)
    assert book.status(job)["forfeited_wei"] == str(ETH // 20)
    await book.finish(job)
    earned = {}
    for w in (honest, cheat, newbie):
        tm = _trainer(chain, w, tmp_path / w.address)
        for r in book.receipts_for(job, w.address)[0]:
            tm.kept[(job, r.round, r.update)] = Kept(r, chain.chain_id, chain.contract)
        earned[w.address] = tm.redeem(job)
        row = tm.earnings(job)["jobs"][job]
        assert row["pending"] == row["vesting"] == 0
    assert earned[cheat.address]["forfeited"] == 1 and earned[cheat.address]["wei"] == "0"
    assert [int(earned[w.address]["wei"]) for w in (honest, newbie)] == [ETH // 10, ETH // 20]
    assert market.job(job).paid == 3 * (ETH // 20)  # refund: the deposit minus this


async def test_a_forfeit_the_ledger_missed_is_kept_and_blocks_the_end(
    chain: ChainInfo, tmp_path: Path
) -> None:
    owner, cheat = funded_wallet(chain), funded_wallet(chain)
    market = Market(chain.rpc_url, chain.contract, owner.key)
    job = os.urandom(8).hex()
    book = Settlement(market, owner, chain.chain_id, tmp_path)
    await book.open(job, TERMS)
    live = _live(job, {"cheat": cheat})
    await settle(book, live, 1, [Update("cheat", h("c1"), "")], parent=h("m0"), model=h("m1"))
    down = Market("http://127.0.0.1:9", chain.contract, owner.key, rpc_timeout_s=1)
    offline = Settlement(down, owner, chain.chain_id, tmp_path)
    offline.books[job] = book.books[job]
    live.cheaters["cheat"] = "replica comparison"
    assert await forfeit_cheaters(offline, live, []) == []
    await offline.finish(job)  # refuses to end the job: that would vest the cheat's pay
    assert market.job(job).ended_at == 0
    resumed = Settlement(market, owner, chain.chain_id, tmp_path)  # the file kept it
    assert resumed.forfeits(job).due == {cheat.address: NO_EVIDENCE}
    await resumed.open(job, TERMS)
    await resumed.finish(job)
    assert market.forfeited(job, cheat.address) and market.job(job).ended_at > 0


def _trainer(chain: ChainInfo, wallet: Wallet, data_dir: Path) -> TrainerMarket:
    settings = LedgerSettings(rpc_url=chain.rpc_url, chain_id=chain.chain_id,
                              contract=chain.contract)
    return TrainerMarket(AskRule(), wallet, settings,
                         Market(chain.rpc_url, chain.contract, wallet.key), data_dir)


async def test_a_cancelled_paid_job_is_ended_on_the_ledger(
    chain: ChainInfo, tmp_path: Path, nanio_server: ServerHandle
) -> None:
    """A paid job cancelled while recruiting (no trainer ever offers) is ended on the
    ledger by the owner, so its deposit's refund can start without waiting for VEST."""
    owner_wallet = funded_wallet(chain)
    market = Market(chain.rpc_url, chain.contract, owner_wallet.key)
    book = Settlement(market, owner_wallet, chain.chain_id, tmp_path / "market")
    async with trio.open_nursery() as nursery:
        net = MemNet(nursery)
        node = net.add()
        owner = Owner(node, JobStore(tmp_path / "jobs.sqlite3"),
                      lambda: S3Store(nanio_server.config),
                      OwnerConfig(announce_interval_s=0.2, tick_s=0.05), market=book)
        await nursery.start(owner.run)
        spec = from_mapping({**SMALL, "price": {"budget": str(ETH), "max_price": str(ETH // 10)}})
        job = await owner.submit(spec)
        await wait_until(lambda: market.job(job).deposit == ETH, 60, "the escrow")
        assert market.job(job).ended_at == 0
        assert await owner.cancel(job)
        await wait_until(lambda: market.job(job).ended_at > 0, 60, "the job ended on the ledger")
        nursery.cancel_scope.cancel()
