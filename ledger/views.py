"""The contract's view calls over plain JSON-RPC (``eth_call``), without web3 (blocking).

A trainer reads the contract before it offers (is the job escrowed?) and after each
job (vested, forfeited, redeemed, the round log) but signs a transaction only when it
redeems. web3 costs a daemon ~10 MB resident for as long as it lives (issue 17), so
these reads go out as plain ``eth_call`` requests: the selector is the first four bytes
of keccak256 of the function's signature, every argument and result here is one static
32-byte ABI word (the two struct results are static tuples, laid out word by word).
``Market`` uses them; its transactions still go through web3, imported on first use.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence

from ledger.errors import ChainUnavailable, TxRefused
from ledger.ethkeys import keccak256, to_checksum_address

#: Most bytes of one JSON-RPC answer read (a view result here is at most 7 words).
MAX_ANSWER_BYTES = 64 * 1024


def selector(signature: str) -> bytes:
    """The 4-byte function selector of e.g. ``jobs(bytes32)``."""
    return keccak256(signature.encode())[:4]


def word(value: bytes | int | str) -> bytes:
    """One ABI word: a 32-byte value, an unsigned int or an address (``0x...``)."""
    if isinstance(value, bytes):
        if len(value) != 32:
            raise ValueError(f"a bytes32 argument is {len(value)} bytes")
        return value
    if isinstance(value, str):
        return bytes(12) + bytes.fromhex(to_checksum_address(value)[2:])
    return value.to_bytes(32, "big")


def rpc(rpc_url: str, method: str, params: list[object], timeout_s: float) -> object:
    """One JSON-RPC call; its ``result``.

    Raises:
        ChainUnavailable: unreachable, not JSON-RPC, or an error other than a revert.
        TxRefused: the call reverted (``detail`` holds the node's message).
    """
    data = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    request = urllib.request.Request(rpc_url, data=data.encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            body = json.loads(response.read(MAX_ANSWER_BYTES))
    except (OSError, ValueError) as exc:
        raise ChainUnavailable(f"JSON-RPC endpoint unreachable: {exc}") from exc
    if not isinstance(body, dict) or ("result" not in body and "error" not in body):
        raise ChainUnavailable(f"JSON-RPC error: not an answer to {method}")
    error = body.get("error")
    if error is not None:
        message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
        if "revert" in message.lower():
            raise TxRefused(message)
        raise ChainUnavailable(f"JSON-RPC error: {message}")
    return body["result"]


def call(rpc_url: str, contract: str, signature: str, args: Sequence[bytes | int | str],
         words: int, timeout_s: float) -> list[bytes]:
    """``eth_call`` of ``signature`` on ``contract`` at the latest block; its ``words``.

    Raises:
        ChainUnavailable: as :func:`rpc`, or a result that is not ``words`` ABI words.
        TxRefused: the call reverted.
    """
    data = "0x" + (selector(signature) + b"".join(word(a) for a in args)).hex()
    result = rpc(rpc_url, "eth_call", [{"to": contract, "data": data}, "latest"], timeout_s)
    try:
        raw = bytes.fromhex(str(result).removeprefix("0x"))
    except ValueError as exc:
        raise ChainUnavailable(f"JSON-RPC error: {signature} answered non-hex") from exc
    if len(raw) != 32 * words:
        raise ChainUnavailable(f"JSON-RPC error: {signature} answered {len(raw)} bytes, "
                               f"not {32 * words}")
    return [raw[32 * i:32 * (i + 1)] for i in range(words)]


def as_int(w: bytes) -> int:
    """An unsigned ABI word."""
    return int.from_bytes(w, "big")


def as_bool(w: bytes) -> bool:
    """A bool ABI word."""
    return as_int(w) != 0


def as_address(w: bytes) -> str:
    """An address ABI word, checksummed."""
    return to_checksum_address("0x" + w[12:].hex())
