"""The daemon's market parts against a real anvil node: config checks and the refund route."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger.client import Market
from ledger.devchain import ChainInfo, advance_time, dev_rpc
from ledger.errors import ChainUnavailable
from p2pnode.errors import ConfigError
from p2pnode.market import MarketParts

from .conftest import ETH, funded_wallet


def key_file(tmp_path: Path, key: bytes) -> str:
    path = tmp_path / "owner.key"
    path.touch(mode=0o600)
    path.write_text(key.hex())
    return str(path)


def test_wrong_chain_id_or_missing_contract_is_a_config_error(
    chain: ChainInfo, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="is chain 31337"):
        MarketParts(tmp_path, {"ledger": {"rpc_url": chain.rpc_url, "chain_id": 1,
                                          "contract": chain.contract}})
    with pytest.raises(ConfigError, match="needs rpc_url, chain_id and contract"):
        MarketParts(tmp_path, {"ledger": {"rpc_url": chain.rpc_url}})
    no_ledger = MarketParts(tmp_path, {})
    assert no_ledger.settlement is None and no_ledger.wallet_info()["ledger"] is None


def test_refund_ends_an_unended_job_first_then_refunds_after_grace(
    chain: ChainInfo, tmp_path: Path
) -> None:
    owner = funded_wallet(chain)
    parts = MarketParts(tmp_path, {"ledger": {
        "rpc_url": chain.rpc_url, "chain_id": chain.chain_id, "contract": chain.contract,
        "key_file": key_file(tmp_path, owner.key)}})
    assert parts.client is not None
    job = os.urandom(8).hex()
    parts.client.deposit(job, ETH)
    first = parts.refund(job)
    assert first["ended_now"] and parts.client.job(job).ended_at > 0
    advance_time(chain.rpc_url, parts.client.grace_s() + 1)
    second = parts.refund(job)
    assert (int(second["refunded_wei"]), int(second["paid_wei"])) == (ETH, 0)


def test_ledger_timeouts_are_config_and_bound_the_wait_for_mining(
    chain: ChainInfo, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="ledger.rpc_timeout_s"):
        MarketParts(tmp_path, {"ledger": {"rpc_url": chain.rpc_url, "rpc_timeout_s": 0}})
    owner = funded_wallet(chain)
    parts = MarketParts(tmp_path, {"ledger": {
        "rpc_url": chain.rpc_url, "chain_id": chain.chain_id, "contract": chain.contract,
        "key_file": key_file(tmp_path, owner.key), "tx_timeout_s": 0.5}})
    assert parts.client is not None and parts.client.tx_timeout_s == 0.5
    dev_rpc(chain.rpc_url, "evm_setAutomine", [False])
    try:
        with pytest.raises(ChainUnavailable, match="not mined in time") as caught:
            parts.client.deposit(os.urandom(8).hex(), ETH)
        assert caught.value.reason == "chain_unavailable"
    finally:
        dev_rpc(chain.rpc_url, "evm_setAutomine", [True])
        dev_rpc(chain.rpc_url, "evm_mine", [])
    assert Market(chain.rpc_url, chain.contract).tx_timeout_s == 60.0


def test_refund_of_an_unended_job_sends_a_due_forfeit_before_ending_it(
    chain: ChainInfo, tmp_path: Path
) -> None:
    owner, cheat = funded_wallet(chain), funded_wallet(chain)
    parts = MarketParts(tmp_path, {"ledger": {
        "rpc_url": chain.rpc_url, "chain_id": chain.chain_id, "contract": chain.contract,
        "key_file": key_file(tmp_path, owner.key)}})
    assert parts.client is not None and parts.settlement is not None
    job = os.urandom(8).hex()
    parts.client.deposit(job, ETH)
    # The daemon caught a cheat but stopped before the ledger took the forfeit.
    parts.settlement.forfeits(job).due[cheat.address] = "ab" * 32
    assert parts.refund(job)["ended_now"]
    assert parts.client.forfeited(job, cheat.address)  # before the end vested its receipts
    assert parts.client.job(job).ended_at > 0
