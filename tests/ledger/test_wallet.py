"""Wallet keys (0600, sources) and the binding of an address to a libp2p peer id."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ledger import receipts, wallet
from ledger.errors import LedgerConfigError, LedgerError


def test_key_created_once_private_and_reused(tmp_path: Path) -> None:
    first = wallet.load(tmp_path)
    path = tmp_path / wallet.WALLET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert wallet.load(tmp_path) == first
    path.chmod(0o644)
    with pytest.raises(LedgerConfigError, match="readable by others"):
        wallet.load(tmp_path)


def test_key_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = os.urandom(32)
    monkeypatch.setenv("DT_TEST_KEY", "0x" + key.hex())
    assert wallet.load(tmp_path, key_env="DT_TEST_KEY").key == key
    with pytest.raises(LedgerConfigError, match="not set"):
        wallet.load(tmp_path, key_env="DT_TEST_MISSING")
    with pytest.raises(LedgerConfigError, match="does not exist"):
        wallet.load(tmp_path, key_file=str(tmp_path / "nope"))
    bad = tmp_path / "bad.key"
    bad.write_text("zz")
    bad.chmod(0o600)
    with pytest.raises(LedgerConfigError, match="not a hex key"):
        wallet.load(tmp_path, key_file=str(bad))


def test_binding_names_one_peer_and_one_address(tmp_path: Path) -> None:
    alice = wallet.Wallet.from_key(os.urandom(32))
    bob = wallet.Wallet.from_key(os.urandom(32))
    sig = alice.bind("12D3KooWAlice")
    assert wallet.verify_binding("12D3KooWAlice", alice.address, sig)
    # Another peer cannot reuse Alice's binding, nor claim Alice's address with its own key.
    assert not wallet.verify_binding("12D3KooWBob", alice.address, sig)
    assert not wallet.verify_binding("12D3KooWBob", alice.address, bob.bind("12D3KooWBob"))
    assert not wallet.verify_binding("12D3KooWAlice", "not-an-address", sig)
    assert not wallet.verify_binding("12D3KooWAlice", alice.address, b"\x00" * 65)
    assert not wallet.verify_binding("12D3KooWAlice", alice.address, b"short")


def test_garbage_receipt_signature_is_a_ledger_error() -> None:
    bad = receipts.Receipt("j", 1, "0x" + "11" * 20, "00" * 32, 5, b"\xff" * 65)
    with pytest.raises(LedgerError, match="unrecoverable signature"):
        receipts.signer(bad, chain_id=1, contract="0x" + "22" * 20)
