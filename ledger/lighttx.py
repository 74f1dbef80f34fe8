"""The contract's transactions, sent without web3 (blocking).

A trainer redeems its receipts at a job's end, an owner deposits, commits rounds, ends,
refunds and forfeits; importing web3 for them cost a daemon ~20 MiB resident for as
long as it lived (issue 17). This builds the call data by hand (the selector and the
ABI words: every argument is static, ``redeem``'s a dynamic array of static tuples),
signs an EIP-155 legacy transaction (``ledger.ethkeys``, no eth_account), sends it with
``eth_sendRawTransaction`` and polls its receipt. ``eth_estimateGas`` runs first, so a
redeem the contract would refuse surfaces as ``TxRefused`` with the node's revert
message, before anything is sent.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ledger import ethkeys, views
from ledger.errors import ChainUnavailable, TxRefused

REDEEM = "redeem((bytes32,uint64,address,bytes32,uint256,uint8,bytes32,bytes32)[])"
#: The longest wait between two asks for a sent transaction's receipt; the first asks
#: come after 5 ms, then ever less often: a local chain (anvil) mines at once, and an
#: owner's round waits for its commitment's receipt.
RECEIPT_POLL_S = 0.1
FIRST_POLL_S = 0.005


def redeem_data(rows: Sequence[tuple[bytes, int, str, bytes, int, int, bytes, bytes]]) -> bytes:
    """The call data of ``redeem(rows)``: selector, offset, length, then 8 words a row."""
    out = [views.selector(REDEEM), views.word(32), views.word(len(rows))]
    out += [views.word(field) for row in rows for field in row]
    return b"".join(out)


def _int(answer: object, what: str) -> int:
    try:
        return int(str(answer), 16)
    except ValueError:
        raise ChainUnavailable(f"JSON-RPC error: {what} answered {answer!r}") from None


def call_data(signature: str, *args: bytes | int | str) -> bytes:
    """The call data of a function whose arguments are all static ABI words."""
    return views.selector(signature) + b"".join(views.word(a) for a in args)


def transact(rpc_url: str, *, key: bytes, sender: str, to: str, data: bytes,
             rpc_timeout_s: float, tx_timeout_s: float, value: int = 0) -> tuple[str, int, int]:
    """Send ``data`` and ``value`` wei to ``to``; ``(tx hash hex, gas used, block)`` once mined.

    Raises:
        TxRefused: the contract would revert (gas estimate) or did (receipt status 0).
        ChainUnavailable: the endpoint failed, or the transaction was not mined in
            ``tx_timeout_s``.
    """
    def rpc(method: str, params: list[object]) -> Any:
        return views.rpc(rpc_url, method, params, rpc_timeout_s)

    hex_data = "0x" + data.hex()
    call = {"from": sender, "to": to, "data": hex_data, "value": hex(value)}
    gas = _int(rpc("eth_estimateGas", [call]), "gas")
    raw, _ = ethkeys.legacy_transaction(
        key, nonce=_int(rpc("eth_getTransactionCount", [sender, "pending"]), "nonce"),
        gas_price=_int(rpc("eth_gasPrice", []), "gas price"), gas=gas, to=to, value=value,
        data=data, chain_id=_int(rpc("eth_chainId", []), "chain id"))
    tx_hash = rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
    deadline, pause = time.monotonic() + tx_timeout_s, FIRST_POLL_S
    while not (receipt := rpc("eth_getTransactionReceipt", [tx_hash])):
        if time.monotonic() > deadline:
            raise ChainUnavailable(f"transaction {tx_hash} not mined in time ({tx_timeout_s:g} s)")
        time.sleep(pause)
        pause = min(2 * pause, RECEIPT_POLL_S)
    if not isinstance(receipt, dict) or _int(receipt.get("status"), "status") != 1:
        raise TxRefused(f"transaction {tx_hash} reverted")
    return (str(tx_hash).removeprefix("0x"), _int(receipt.get("gasUsed"), "gas used"),
            _int(receipt.get("blockNumber"), "block"))
