"""A real anvil dev chain with the market contract deployed, shared by the module."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from ledger.devchain import ChainInfo, DevChain, fund
from ledger.wallet import Wallet

ETH = 10**18


@pytest.fixture(scope="module")
def chain() -> Iterator[ChainInfo]:
    with DevChain(grace_s=3600) as info:
        yield info


def funded_wallet(chain: ChainInfo, wei: int = 10 * ETH) -> Wallet:
    wallet = Wallet.from_key(secrets.token_bytes(32))
    fund(chain.rpc_url, wallet.address, wei)
    return wallet
