"""A peer that tries to frame an honest trainer (test and benchmark use only).

    python -m tests.job.framing_attacker --connect OWNER_MADDR --job JOB_ID --go-file PATH
        [--copies N]

Connects to the owner with a bare py-libp2p host, subscribes to the job's topic and
waits for the first ``job.update`` announcement an honest trainer publishes there. It
prints ``{"captured": true, "victim": PEER_ID}`` and waits for ``--go-file`` to exist (so
the caller can read the victim's reputation first); then it publishes ``--copies`` replays
of the genuine bytes and ``--copies`` forged copies (one bit flipped inside the
signature) to the owner, and prints ``{"replayed": N, "forged": N, "seconds": S}``.
It then stays up until killed. A framing defence charges nobody for either copy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from protocols.envelope import open_message
from protocols.errors import EnvelopeError
from protocols.job import job_topic


def forge(wire: bytes) -> bytes:
    """The same envelope with one bit flipped inside its signature."""
    forged = bytearray(wire)
    forged[-5] ^= 0x01
    return bytes(forged)


async def attack(args: argparse.Namespace) -> None:
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = new_host(key_pair=create_new_key_pair(), listen_addrs=listen)
    router = GossipSub(protocols=[PROTOCOL_ID_V11, PROTOCOL_ID], degree=6, degree_low=4,
                       degree_high=12, heartbeat_interval=1, spam_protection_enabled=False,
                       eclipse_protection_enabled=False)
    pubsub = Pubsub(host, router, strict_signing=True)
    topic = job_topic(args.job)
    async with host.run(listen_addrs=listen):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            with trio.fail_after(10):
                await host.connect(info_from_p2p_addr(multiaddr.Multiaddr(args.connect)))
            sub = await pubsub.subscribe(topic)
            while True:
                msg = await sub.get()
                try:
                    opened = open_message(bytes(msg.data))
                except EnvelopeError:
                    continue
                if opened.kind == "job.update" and opened.sender == ID(msg.from_id):
                    break
            wire = bytes(msg.data)
            print(json.dumps({"captured": True, "victim": opened.sender.to_base58(),
                              "round": opened.round}), flush=True)
            while not args.go_file.exists():  # noqa: ASYNC110 - another process signals
                await trio.sleep(0.05)
            t0 = time.monotonic()
            sent = {"replayed": 0, "forged": 0}
            for _ in range(args.copies):
                for kind, data in (("replayed", wire), ("forged", forge(wire))):
                    try:
                        await pubsub.publish(topic, data)
                        sent[kind] += 1
                    except Exception:  # noqa: BLE001 - a banned attacker's writes fail
                        pass
                await trio.lowlevel.checkpoint()
            print(json.dumps({**sent, "seconds": round(time.monotonic() - t0, 2),
                              "peer_id": host.get_id().to_base58()}), flush=True)
            await trio.sleep_forever()


def main() -> int:
    parser = argparse.ArgumentParser(prog="framing_attacker")
    parser.add_argument("--connect", required=True, help="the owner's multiaddr")
    parser.add_argument("--job", required=True, help="the job id whose topic to watch")
    parser.add_argument("--go-file", type=Path, required=True,
                        help="publish the copies once this file exists")
    parser.add_argument("--copies", type=int, default=100)
    trio.run(attack, parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
