"""ledger.ethkeys against eth_account (the reference it replaces on a daemon's path), and
that a trainer's ledger path leaves eth_account and eth_utils unimported (issue 17)."""

from __future__ import annotations

import random
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils.address import to_checksum_address as eth_checksum
from eth_utils.crypto import keccak

from ledger import ethkeys, receipts, wallet

REPO = Path(__file__).resolve().parents[2]


def test_keys_addresses_and_personal_signatures_match_eth_account() -> None:
    rng = random.Random(17)
    for _ in range(40):
        key = secrets.token_bytes(32)
        assert ethkeys.address_of(key) == Account.from_key(key).address
        text = "binding\n" * rng.randrange(0, 12)
        ours = ethkeys.sign_hash(key, ethkeys.personal_hash(text))
        assert ours == bytes(Account.sign_message(encode_defunct(text=text), key).signature)
        assert ethkeys.recover_hash(ethkeys.personal_hash(text), ours) == ethkeys.address_of(key)
        address = "0x" + secrets.token_hex(20)
        assert ethkeys.to_checksum_address(address) == eth_checksum(address)
        assert ethkeys.to_checksum_address(address[2:].upper()) == eth_checksum(address)
    assert ethkeys.keccak256(b"abc") == bytes(keccak(b"abc"))


def test_receipt_digest_and_signature_match_eth_account_typed_data() -> None:
    key, contract = secrets.token_bytes(32), "0x" + secrets.token_hex(20)
    trainer, update = "0x" + secrets.token_hex(20), secrets.token_hex(32)
    r = receipts.sign(key, chain_id=31337, contract=contract, job_id="j1", round_=3,
                      trainer=trainer, update=update, amount=10**18 + 5)
    msg = encode_typed_data(
        domain_data={"name": receipts.DOMAIN_NAME, "version": receipts.DOMAIN_VERSION,
                     "chainId": 31337, "verifyingContract": eth_checksum(contract)},
        message_types=receipts.RECEIPT_TYPES,
        message_data={"job": receipts.job_key("j1"), "round": 3,
                      "trainer": eth_checksum(trainer), "update": bytes.fromhex(update),
                      "amount": 10**18 + 5})
    assert receipts.digest(r, chain_id=31337, contract=contract) == bytes(
        keccak(b"\x19" + msg.version + msg.header + msg.body))
    assert r.signature == bytes(Account.sign_message(msg, key).signature)
    assert receipts.signer(r, chain_id=31337, contract=contract) == Account.from_key(key).address


def test_legacy_transaction_matches_eth_account() -> None:
    rng = random.Random(5)
    for nonce in (0, 1, 127, 128, 70_000):
        key, to = secrets.token_bytes(32), eth_checksum("0x" + secrets.token_hex(20))
        data = secrets.token_bytes(rng.choice((0, 1, 55, 56, 300)))
        tx = {"to": to, "data": "0x" + data.hex(), "value": rng.choice((0, 10**18)),
              "gas": rng.randrange(21_000, 10**7), "gasPrice": rng.randrange(1, 10**12),
              "nonce": nonce, "chainId": rng.choice((1, 296, 31337))}
        raw, tx_hash = ethkeys.legacy_transaction(
            key, nonce=nonce, gas_price=tx["gasPrice"], gas=tx["gas"], to=to,
            value=tx["value"], data=data, chain_id=tx["chainId"])
        signed = Account.sign_transaction(tx, key)
        assert (raw, tx_hash) == (bytes(signed.raw_transaction), bytes(signed.hash))


@pytest.mark.parametrize("bad", ["", "0x12", "0x" + "g" * 40, "0x" + "1" * 41, "1" * 39])
def test_bad_addresses_are_value_errors(bad: str) -> None:
    assert not ethkeys.is_address(bad)
    with pytest.raises(ValueError, match="not an address"):
        ethkeys.to_checksum_address(bad)


def test_bad_signatures_do_not_recover() -> None:
    digest, key = bytes(32), secrets.token_bytes(32)
    good = ethkeys.sign_hash(key, digest)
    for bad in (good[:64], good[:64] + b"\x01", good[:64] + b"\x25", b"\xff" * 65,
                bytes(64) + b"\x1b"):
        with pytest.raises(ValueError):
            ethkeys.recover_hash(digest, bad)
    # A peer's binding of the wrong type is no binding either (verify_binding never raises).
    assert not wallet.verify_binding("12D3KooWA", ethkeys.address_of(key), "x" * 65)  # type: ignore[arg-type]


def test_trainer_ledger_path_leaves_eth_account_unimported() -> None:
    """Wallet, binding, receipts and the Market client, as a trainer uses them."""
    code = (
        "import sys, os; from ledger import wallet, receipts; from ledger.client import Market; "
        "import p2pnode.market, protocols.market.earnings, protocols.market.settle; "
        "w = wallet.Wallet.from_key(os.urandom(32)); "
        "assert wallet.verify_binding('12D3KooWA', w.address, w.bind('12D3KooWA')); "
        "r = receipts.sign(w.key, chain_id=1, contract='0x' + '22' * 20, job_id='j', round_=1, "
        "trainer=w.address, update='00' * 32, amount=5); "
        "assert receipts.signer(r, chain_id=1, contract='0x' + '22' * 20) == w.address; "
        "Market('http://127.0.0.1:9', '0x' + '22' * 20, w.key); "
        "print(sorted(m for m in ('eth_account', 'eth_utils', 'eth_keys', 'web3') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.strip() == "[]"
