"""The owner takes a paid job's offer only with a wallet bound to the offering peer."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from ledger.wallet import Wallet
from protocols.job import codec
from protocols.job.codec import Kind
from protocols.job.owner.config import LiveJob, OwnerConfig
from protocols.job.owner.recruit import Recruiter
from protocols.job.spec import from_mapping

PAID = from_mapping({"price": {"budget": "1000", "max_price": "100"}})


def recruiter() -> Recruiter:
    env: Any = SimpleNamespace(node=None, cfg=OwnerConfig(), reputation=None, market=None)
    return Recruiter(env)


def offer(keys: Any, **market: Any) -> Any:
    wire = codec.encode(keys.private_key, Kind.OFFER,
                        codec.offer(health=90.0, free_slots=1, cpu_count=2, **market),
                        job_id="job1")
    return codec.decode(wire, frozenset({Kind.OFFER}))


def test_offer_with_own_binding_is_taken_with_its_ask_and_address() -> None:
    keys, wallet = create_new_key_pair(), Wallet.from_key(os.urandom(32))
    peer = ID.from_pubkey(keys.public_key).to_base58()
    live = LiveJob("job1", PAID)
    ack, _ = recruiter().take_offer(live, offer(
        keys, ask="60", wallet_address=wallet.address, wallet_binding=wallet.bind(peer)))
    assert ack.ok
    assert (live.offers[peer].ask, live.offers[peer].address) == (60, wallet.address)


def test_claiming_another_peers_wallet_or_asking_too_much_is_refused() -> None:
    alice, mallory = create_new_key_pair(), create_new_key_pair()
    alice_peer = ID.from_pubkey(alice.public_key).to_base58()
    alice_wallet = Wallet.from_key(os.urandom(32))
    stolen = alice_wallet.bind(alice_peer)  # seen in Alice's offers
    live = LiveJob("job1", PAID)
    r = recruiter()
    ack, _ = r.take_offer(live, offer(mallory, ask="1", wallet_address=alice_wallet.address,
                                      wallet_binding=stolen))
    assert (ack.ok, ack.reason) == (False, "bad_wallet_binding")
    ack, _ = r.take_offer(live, offer(mallory, ask="1"))
    assert (ack.ok, ack.reason) == (False, "bad_wallet_binding")
    ack, _ = r.take_offer(live, offer(alice, ask="101", wallet_address=alice_wallet.address,
                                      wallet_binding=stolen))
    assert (ack.ok, ack.reason) == (False, "ask_too_high")
    assert live.offers == {}
    ack, _ = r.take_offer(live, offer(alice, ask="12x"))
    assert (ack.ok, ack.reason) == (False, "bad_number")
