"""The ``[ledger]`` table: which EVM endpoint and contract a daemon settles on.

::

    [ledger]
    rpc_url = "http://127.0.0.1:8545"   # any Ethereum JSON-RPC endpoint (Hedera's relay...)
    chain_id = 31337                     # checked against the endpoint at start
    contract = "0x..."                   # the deployed market contract (docs/ledger.md)
    key_file = ""                        # wallet key file (hex, mode 0600); "" = D/wallet.key
    key_env = ""                         # or the name of a variable holding the key
    commit_rounds = true                 # owner: commit each round to the public log
    rpc_timeout_s = 10.0                 # each JSON-RPC request's HTTP timeout
    tx_timeout_s = 60.0                  # how long a transaction may take to be mined

No ``[ledger]`` table (``rpc_url`` empty): the daemon runs unpaid jobs only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

#: Default of ``rpc_timeout_s``: each JSON-RPC request's HTTP timeout, in seconds.
RPC_TIMEOUT_S = 10.0
#: Default of ``tx_timeout_s``: how long to wait for a transaction to be mined, in seconds.
TX_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class LedgerSettings:
    """The EVM endpoint and market contract this daemon settles on (docs/ledger.md).

    An empty ``rpc_url`` means no ledger: unpaid jobs only.
    """

    rpc_url: str = ""
    chain_id: Annotated[int, Field(ge=0)] = 0
    contract: str = ""
    key_file: str = ""
    key_env: str = ""
    commit_rounds: bool = True
    rpc_timeout_s: Annotated[float, Field(gt=0, le=600)] = RPC_TIMEOUT_S
    tx_timeout_s: Annotated[float, Field(gt=0, le=3600)] = TX_TIMEOUT_S

    @property
    def enabled(self) -> bool:
        """Whether a ledger is configured."""
        return bool(self.rpc_url)
