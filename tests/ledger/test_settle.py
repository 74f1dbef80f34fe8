"""The owner's settlement on a real anvil node: escrow once, pay, commit, resume."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ledger import receipts as rc
from ledger.client import Market
from ledger.devchain import ChainInfo
from protocols.market.settle import Settlement
from protocols.market.terms import PriceTerms

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
