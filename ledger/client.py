"""``Market``: the one door to the contract over any EVM JSON-RPC endpoint (blocking).

Every method blocks on HTTP; daemons call them with ``trio.to_thread.run_sync``.
Transactions are signed locally with the wallet key (``eth_sendRawTransaction``),
so the endpoint never holds a key: anvil, Hedera's JSON-RPC relay or any other
EVM node works alike. A revert surfaces as ``TxRefused`` with the contract's reason;
an unreachable endpoint as ``ChainUnavailable``. The view calls go out as plain
``eth_call`` requests (``ledger.views``) and the transactions as raw signed ones
(``ledger.lighttx``); web3 is imported only to deploy the contract or through the
``w3``/``contract`` handles (tests), so no daemon carries it (issue 17).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from ledger import artifact, lighttx, views
from ledger.config import RPC_TIMEOUT_S, TX_TIMEOUT_S
from ledger.errors import ChainUnavailable, TxRefused
from ledger.ethkeys import address_of, to_checksum_address
from ledger.receipts import Receipt, job_key, sha256_bytes

if TYPE_CHECKING:
    from eth_typing import ChecksumAddress
    from web3 import Web3
    from web3.contract import Contract

#: The most receipts one ``redeem`` transaction carries (the contract's MAX_BATCH).
MAX_BATCH = 128


@dataclass(frozen=True)
class TxResult:
    """A mined transaction.

    Attributes:
        tx_hash: Its hash, hex without ``0x``.
        gas_used: The gas it used; times the gas price, its fee (:meth:`Market.fees`).
        block: The number of the block it was mined in.
    """

    tx_hash: str
    gas_used: int
    block: int


@dataclass(frozen=True)
class JobState:
    """What the contract holds for one job (amounts in wei)."""

    owner: str
    deposit: int
    paid: int
    ended_at: int
    refunded: bool
    rounds: int
    vest_at: int = 0  # receipts redeem from here on, or once the job ended

    @property
    def left(self) -> int:
        """What is still escrowed and unpaid."""
        return 0 if self.refunded else self.deposit - self.paid


@dataclass(frozen=True)
class Commitment:
    """One entry of a job's public round log (digests as hex)."""

    index: int
    round: int
    model: str
    parent: str
    updates_root: str


class Market:
    """A connection to one deployed market contract.

    Args:
        rpc_url: the JSON-RPC endpoint.
        contract: the contract address.
        key: the wallet key that signs transactions (None: read-only).
        rpc_timeout_s: each JSON-RPC request's HTTP timeout (``[ledger] rpc_timeout_s``).
        tx_timeout_s: how long a transaction may take to be mined (``[ledger] tx_timeout_s``);
            past it the call raises ``ChainUnavailable``.
    """

    def __init__(self, rpc_url: str, contract: str, key: bytes | None = None, *,
                 rpc_timeout_s: float = RPC_TIMEOUT_S, tx_timeout_s: float = TX_TIMEOUT_S) -> None:
        self.rpc_url, self.rpc_timeout_s = rpc_url, rpc_timeout_s
        self.tx_timeout_s = tx_timeout_s
        self.address = to_checksum_address(contract)
        self._key = key
        self.sender = address_of(key) if key else None
        self._lock = threading.Lock()

    @cached_property
    def w3(self) -> Web3:
        """The web3 connection, made (and web3 imported) on first use."""
        from web3 import Web3

        return Web3(Web3.HTTPProvider(self.rpc_url,
                                      request_kwargs={"timeout": self.rpc_timeout_s}))

    @cached_property
    def contract(self) -> Contract:
        """The contract's web3 handle (transactions), made on first use."""
        return self.w3.eth.contract(address=cast("ChecksumAddress", self.address),
                                    abi=artifact.load().abi)

    def _view(self, signature: str, *args: bytes | int | str, words: int = 1) -> list[bytes]:
        return views.call(self.rpc_url, self.address, signature, args, words,
                          self.rpc_timeout_s)

    @property
    def chain_id(self) -> int:
        """The endpoint's chain id."""
        answer = views.rpc(self.rpc_url, "eth_chainId", [], self.rpc_timeout_s)
        try:
            return int(str(answer), 16)
        except ValueError:
            raise ChainUnavailable(f"JSON-RPC error: chain id {answer!r}") from None

    @staticmethod
    def deploy(rpc_url: str, key: bytes, *, grace_s: int, vest_s: int,
               rpc_timeout_s: float = RPC_TIMEOUT_S, tx_timeout_s: float = TX_TIMEOUT_S) -> str:
        """Deploy the checked-in artifact; return the new contract's address.

        ``grace_s``: how long after a job's end trainers may still redeem before the
        owner's refund. ``vest_s``: the longest a job's receipts are held after its
        first deposit (they redeem once the owner ends the job, or after ``vest_s``).
        """
        from web3 import Web3

        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": rpc_timeout_s}))
        art = artifact.load()
        factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
        sender = cast("ChecksumAddress", address_of(key))
        tx = _rpc(lambda: factory.constructor(grace_s, vest_s).build_transaction(
            {"from": sender, "nonce": w3.eth.get_transaction_count(sender, "pending")}))
        receipt = _send(w3, key, tx, tx_timeout_s)
        return str(receipt["contractAddress"])

    def _transact(self, data: bytes, value: int = 0) -> TxResult:
        # Without web3 (ledger/lighttx.py), for owners and trainers alike (issue 17).
        if self._key is None or self.sender is None:
            raise TxRefused("this market client has no wallet key", reason="no_wallet")
        with self._lock:
            tx_hash, gas, block = lighttx.transact(
                self.rpc_url, key=self._key, sender=self.sender, to=self.address, data=data,
                rpc_timeout_s=self.rpc_timeout_s, tx_timeout_s=self.tx_timeout_s, value=value)
        return TxResult(tx_hash=tx_hash, gas_used=gas, block=block)

    def deposit(self, job_id: str, wei: int) -> TxResult:
        """Escrow ``wei`` for ``job_id`` (the first deposit makes the sender its owner)."""
        return self._transact(lighttx.call_data("deposit(bytes32)", job_key(job_id)), value=wei)

    def redeem(self, receipts: list[Receipt]) -> TxResult:
        """Redeem up to ``MAX_BATCH`` receipts in one transaction (all or none)."""
        if not 0 < len(receipts) <= MAX_BATCH:
            raise TxRefused(f"a batch holds 1..{MAX_BATCH} receipts", reason="bad_batch")
        rows = [(job_key(r.job_id), r.round, r.trainer, sha256_bytes(r.update), r.amount,
                 r.signature[64] if r.signature[64] >= 27 else r.signature[64] + 27,
                 r.signature[:32], r.signature[32:64]) for r in receipts]
        return self._transact(lighttx.redeem_data(rows))

    def forfeit(self, job_id: str, trainer: str, evidence: str) -> TxResult:
        """Forfeit ``trainer``'s receipts of ``job_id`` (owner, before they vest).

        ``evidence`` is the sha256 (hex) of the update judged a cheat; it goes into
        the public ``Forfeited`` event.
        """
        return self._transact(lighttx.call_data(
            "forfeit(bytes32,address,bytes32)", job_key(job_id), to_checksum_address(trainer),
            sha256_bytes(evidence)))

    def forfeited(self, job_id: str, trainer: str) -> bool:
        """Whether ``trainer``'s receipts of ``job_id`` were forfeited."""
        return views.as_bool(self._view("forfeited(bytes32,address)", job_key(job_id),
                                        trainer)[0])

    def vested(self, job_id: str) -> bool:
        """Whether ``job_id``'s receipts redeem now (ended, or held for ``vest_s``)."""
        return views.as_bool(self._view("vested(bytes32)", job_key(job_id))[0])

    def end_job(self, job_id: str) -> TxResult:
        """Declare the job over; the grace period starts at this block's time."""
        return self._transact(lighttx.call_data("end_job(bytes32)", job_key(job_id)))

    def refund(self, job_id: str) -> TxResult:
        """Take back the unpaid rest (after end + grace)."""
        return self._transact(lighttx.call_data("refund(bytes32)", job_key(job_id)))

    def commit_round(self, job_id: str, round_: int, *, model: str, parent: str,
                     updates_root: bytes) -> TxResult:
        """Append one round to the job's public log."""
        parent_b = sha256_bytes(parent) if parent else bytes(32)
        if not 0 <= round_ < 2**64:  # views.word checks the bytes32 arguments
            raise ValueError(f"commit_round takes a uint64 round, not {round_}")
        return self._transact(lighttx.call_data(
            "commit_round(bytes32,uint64,bytes32,bytes32,bytes32)", job_key(job_id), round_,
            sha256_bytes(model), parent_b, updates_root))

    def job(self, job_id: str) -> JobState:
        """The contract's record of ``job_id`` (owner is the zero address if unknown)."""
        row = self._view("jobs(bytes32)", job_key(job_id), words=7)
        n = [views.as_int(w) for w in row]
        return JobState(owner=views.as_address(row[0]), deposit=n[1], paid=n[2],
                        ended_at=n[3], refunded=views.as_bool(row[4]), rounds=n[5],
                        vest_at=n[6])

    def redeemed(self, digest: bytes) -> bool:
        """Whether the receipt with EIP-712 ``digest`` was redeemed."""
        return views.as_bool(self._view("redeemed(bytes32)", digest)[0])

    def round_log(self, job_id: str) -> list[Commitment]:
        """The job's whole public round log, in order."""
        n = self.job(job_id).rounds
        out = []
        for i in range(n):
            row = self._view("round_log(bytes32,uint256)", job_key(job_id), i, words=4)
            out.append(Commitment(index=i, round=views.as_int(row[0]), model=row[1].hex(),
                                  parent=row[2].hex(), updates_root=row[3].hex()))
        return out

    def grace_s(self) -> int:
        """The contract's grace period after a job's end, in seconds."""
        return views.as_int(self._view("GRACE()")[0])

    def vest_s(self) -> int:
        """The longest the contract holds a job's receipts after its first deposit."""
        return views.as_int(self._view("VEST()")[0])

    def balance(self, address: str) -> int:
        """The balance of ``address`` in wei."""
        answer = views.rpc(self.rpc_url, "eth_getBalance",
                           [to_checksum_address(address), "latest"], self.rpc_timeout_s)
        try:
            return int(str(answer), 16)
        except ValueError:
            raise ChainUnavailable(f"JSON-RPC error: balance {answer!r}") from None

    def fees(self, tx_hashes: Sequence[str]) -> int:
        """What the mined transactions ``tx_hashes`` cost their senders, in wei.

        Gas used times the effective gas price, summed: what a balance changed by
        besides the transfers (to check a payment or a refund to the wei).
        """
        total = 0
        for tx_hash in tx_hashes:
            receipt = views.rpc(self.rpc_url, "eth_getTransactionReceipt",
                                ["0x" + tx_hash.removeprefix("0x")], self.rpc_timeout_s)
            fields = receipt if isinstance(receipt, dict) else {}
            try:
                total += int(fields["gasUsed"], 16) * int(fields["effectiveGasPrice"], 16)
            except (KeyError, TypeError, ValueError):
                raise ChainUnavailable(f"JSON-RPC error: receipt of {tx_hash}") from None
        return total


def _rpc(call: Any) -> Any:
    import requests
    from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

    try:
        return call()
    except TimeExhausted as exc:
        raise ChainUnavailable(f"transaction not mined in time: {exc}") from exc
    except ContractLogicError as exc:
        raise TxRefused(str(exc.message or exc)) from exc
    except (requests.RequestException, OSError) as exc:
        raise ChainUnavailable(f"JSON-RPC endpoint unreachable: {exc}") from exc
    except Web3Exception as exc:
        raise ChainUnavailable(f"JSON-RPC error: {exc}") from exc


def _send(w3: Web3, key: bytes, tx: dict[str, Any], tx_timeout_s: float) -> Any:
    from eth_account import Account  # with web3, for the owner's transactions
    signed = Account.sign_transaction(tx, key)
    tx_hash = _rpc(lambda: w3.eth.send_raw_transaction(signed.raw_transaction))
    receipt = _rpc(lambda: w3.eth.wait_for_transaction_receipt(tx_hash, timeout=tx_timeout_s))
    if int(receipt["status"]) != 1:
        raise TxRefused(f"transaction {tx_hash.hex()} reverted")
    return receipt
