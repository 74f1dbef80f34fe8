"""EIP-712 payment receipts and Merkle roots of update hashes (pure, no network).

A receipt says: the owner of ``job`` owes ``amount`` wei to ``trainer`` for the
update with sha256 ``update`` accepted in ``round``. It is signed with EIP-712 over
the domain ``DistroTrainMarket`` version ``1`` bound to the chain id and the
contract address, so a receipt cannot be replayed on another chain or contract.
The contract keys redemptions by the same digest, so each receipt pays once.

The round log commits the Merkle root of the round's accepted update hashes:
leaves are the 32-byte sha256 digests, sorted; a parent is ``sha256(min || max)``
of its two children (commutative, so a proof is a plain list of siblings); an odd
node is carried up unchanged; no leaves gives 32 zero bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ledger.errors import LedgerError
from ledger.ethkeys import keccak256, recover_hash, sign_hash, to_checksum_address

DOMAIN_NAME = "DistroTrainMarket"
DOMAIN_VERSION = "1"
RECEIPT_TYPES: dict[str, list[dict[str, str]]] = {
    "Receipt": [
        {"name": "job", "type": "bytes32"},
        {"name": "round", "type": "uint64"},
        {"name": "trainer", "type": "address"},
        {"name": "update", "type": "bytes32"},
        {"name": "amount", "type": "uint256"},
    ]
}
ZERO32 = bytes(32)


def job_key(job_id: str) -> bytes:
    """The contract's 32-byte key of a job: keccak256 of its id's UTF-8 bytes."""
    return keccak256(job_id.encode())


def sha256_bytes(hex_digest: str) -> bytes:
    """Parse a 64-hex-digit sha256; raise ``LedgerError(bad_hash)`` otherwise."""
    try:
        raw = bytes.fromhex(hex_digest.removeprefix("0x"))
    except ValueError as exc:
        raise LedgerError(f"not a hex digest: {hex_digest[:80]!r}", reason="bad_hash") from exc
    if len(raw) != 32:
        raise LedgerError(f"digest is {len(raw)} bytes, not 32", reason="bad_hash")
    return raw


@dataclass(frozen=True)
class Receipt:
    """One signed receipt; ``signature`` is 65 bytes (r, s, v)."""

    job_id: str
    round: int
    trainer: str
    update: str
    amount: int
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe form (hex strings); ``from_json`` reads it back."""
        return {"job_id": self.job_id, "round": self.round, "trainer": self.trainer,
                "update": self.update, "amount": str(self.amount),
                "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Receipt:
        """Parse ``to_json``'s form; raise ``LedgerError(bad_receipt)`` on any defect."""
        try:
            receipt = cls(job_id=str(body["job_id"]), round=int(body["round"]),
                          trainer=to_checksum_address(str(body["trainer"])),
                          update=str(body["update"]), amount=int(body["amount"]),
                          signature=bytes.fromhex(str(body["signature"]).removeprefix("0x")))
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"malformed receipt: {exc}", reason="bad_receipt") from exc
        sha256_bytes(receipt.update)
        if len(receipt.signature) != 65 or receipt.amount < 0 or not 0 <= receipt.round < 2**64:
            raise LedgerError("receipt fields out of range", reason="bad_receipt")
        return receipt


def _type_hash(name: str, fields: list[dict[str, str]]) -> bytes:
    return keccak256(f"{name}({','.join(f['type'] + ' ' + f['name'] for f in fields)})".encode())


_DOMAIN_TYPE = _type_hash("EIP712Domain", [
    {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}])
_RECEIPT_TYPE = _type_hash("Receipt", RECEIPT_TYPES["Receipt"])


def _uint(value: int) -> bytes:
    return value.to_bytes(32, "big")  # OverflowError (a ValueError) when out of range


def _addr(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(to_checksum_address(address)[2:])


def _digest(chain_id: int, contract: str, job_id: str, round_: int, trainer: str,
            update: str, amount: int) -> bytes:
    """EIP-712: keccak256(0x19 0x01 || domain separator || the receipt's struct hash)."""
    domain = keccak256(_DOMAIN_TYPE + keccak256(DOMAIN_NAME.encode())
                       + keccak256(DOMAIN_VERSION.encode()) + _uint(chain_id) + _addr(contract))
    if not 0 <= round_ < 2**64:
        raise ValueError(f"round {round_} is not a uint64")
    struct = keccak256(_RECEIPT_TYPE + job_key(job_id) + _uint(round_) + _addr(trainer)
                       + sha256_bytes(update) + _uint(amount))
    return keccak256(b"\x19\x01" + domain + struct)


def sign(key: bytes, *, chain_id: int, contract: str, job_id: str, round_: int,
         trainer: str, update: str, amount: int) -> Receipt:
    """Sign one receipt with the owner's wallet ``key``."""
    signature = sign_hash(key, _digest(chain_id, contract, job_id, round_, trainer, update, amount))
    return Receipt(job_id=job_id, round=round_, trainer=to_checksum_address(trainer),
                   update=update, amount=amount, signature=signature)


def digest(receipt: Receipt, *, chain_id: int, contract: str) -> bytes:
    """The EIP-712 digest of ``receipt`` (the contract's ``redeemed`` key)."""
    return _digest(chain_id, contract, receipt.job_id, receipt.round, receipt.trainer,
                   receipt.update, receipt.amount)


def signer(receipt: Receipt, *, chain_id: int, contract: str) -> str:
    """The address that signed ``receipt`` (checksummed).

    Raises:
        LedgerError: ``bad_signature`` when no address can be recovered.
    """
    hashed = digest(receipt, chain_id=chain_id, contract=contract)
    try:
        return recover_hash(hashed, receipt.signature)
    except ValueError as exc:
        raise LedgerError(f"unrecoverable signature: {exc}", reason="bad_signature") from exc


def _pair(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(min(a, b) + max(a, b)).digest()


def merkle_root(update_hashes: list[str]) -> bytes:
    """The Merkle root of ``update_hashes`` (hex sha256 digests), per the module doc."""
    level = sorted(sha256_bytes(h) for h in update_hashes)
    if not level:
        return ZERO32
    while len(level) > 1:
        nxt = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_proof(update_hashes: list[str], leaf: str) -> list[bytes]:
    """The siblings from ``leaf`` up to the root; raise ``LedgerError`` if absent."""
    level = sorted(sha256_bytes(h) for h in update_hashes)
    node = sha256_bytes(leaf)
    if node not in level:
        raise LedgerError(f"{leaf} is not among the round's updates", reason="not_in_round")
    index = level.index(node)
    proof: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        nxt = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, index = nxt, index // 2
    return proof


def verify_proof(root: bytes, leaf: str, proof: list[bytes]) -> bool:
    """Whether ``proof`` carries ``leaf`` up to ``root``."""
    node = sha256_bytes(leaf)
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root
