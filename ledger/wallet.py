r"""The daemon's wallet: a secp256k1 key, and its binding to the libp2p identity.

Key sources, first match wins: the environment variable named by ``key_env``
(hex), the file named by ``key_file`` (hex, mode 0600), else ``data_dir/wallet.key``,
created on first use with mode 0600.

The binding: the wallet signs (EIP-191 ``personal_sign``) the text
``distro-train wallet binding\npeer: <peer id>\naddress: <address>``. A peer puts
its address and this signature in its offers, inside its Ed25519-signed envelope, so
both keys vouch for the pair: a peer cannot claim an address whose key it lacks,
nor reuse another peer's binding (it names the other peer id).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ledger.errors import LedgerConfigError
from ledger.ethkeys import (
    address_of,
    is_address,
    personal_hash,
    recover_hash,
    sign_hash,
    to_checksum_address,
)

WALLET_FILE = "wallet.key"


@dataclass(frozen=True)
class Wallet:
    """A secp256k1 key and its checksummed address."""

    key: bytes = field(repr=False)
    address: str

    @classmethod
    def from_key(cls, key: bytes) -> Wallet:
        """Build from 32 raw key bytes."""
        return cls(key=key, address=address_of(key))

    def bind(self, peer_id: str) -> bytes:
        """Sign the binding of this address to ``peer_id``."""
        return sign_hash(self.key, _binding(peer_id, self.address))


def _binding(peer_id: str, address: str) -> bytes:
    text = f"distro-train wallet binding\npeer: {peer_id}\naddress: {to_checksum_address(address)}"
    return personal_hash(text)


def verify_binding(peer_id: str, address: str, signature: bytes) -> bool:
    """Whether ``signature`` binds ``address`` to ``peer_id`` (never raises)."""
    if not isinstance(address, str) or not is_address(address) or len(signature) != 65:
        return False
    try:
        got = recover_hash(_binding(peer_id, address), signature)
    except (TypeError, ValueError):  # any malformed signature is simply not a binding
        return False
    return bool(got == to_checksum_address(address))


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip().removeprefix("0x"))
    except ValueError as exc:
        raise LedgerConfigError(f"{where}: not a hex key") from exc
    if len(key) != 32:
        raise LedgerConfigError(f"{where}: key is {len(key)} bytes, not 32")
    return key


def load(data_dir: Path, *, key_file: str = "", key_env: str = "") -> Wallet:
    """Load the wallet from the configured source, creating ``data_dir/wallet.key`` once.

    Raises:
        LedgerConfigError: the named variable or file is missing or malformed, or
            the key file is readable by others.
    """
    if key_env:
        text = os.environ.get(key_env)
        if not text:
            raise LedgerConfigError(f"wallet key variable {key_env} is not set")
        return Wallet.from_key(_parse_key(text, f"${key_env}"))
    path = Path(key_file) if key_file else Path(data_dir) / WALLET_FILE
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise LedgerConfigError(f"{path}: wallet key is readable by others (chmod 600)")
        return Wallet.from_key(_parse_key(path.read_text(), str(path)))
    if key_file:
        raise LedgerConfigError(f"wallet key file {path} does not exist")
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    os.replace(tmp, path)
    return Wallet.from_key(key)
