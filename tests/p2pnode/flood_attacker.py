"""A hostile gossip peer (test and benchmark use only; not part of the daemon).

    python -m tests.p2pnode.flood_attacker --connect MADDR [--connect MADDR ...]
        [--count N] [--future-ms MS] [--topic T] [--kind future|junk]

Connects to the given daemons with a bare py-libp2p host (gossipsub spam protection
off), subscribes to ``--topic`` (the presence topic by default), waits for a mesh
peer, then publishes ``--count`` messages as fast as it can and prints one JSON line
``{"sent": N, "seconds": S, "connected": [...]}``. ``future``: validly signed presence
envelopes dated ``--future-ms`` ahead, each with a fresh nonce. ``junk``: random bytes.
It then stays up until killed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service

from protocols.envelope import seal_message
from protocols.pb import distro_pb2 as pb
from protocols.presence import TOPIC as PRESENCE_TOPIC


def payloads(kind: str, key: object, future_ms: int) -> bytes:
    if kind == "junk":
        return os.urandom(200)
    status = pb.Presence(health=99.0, accepting=True, seq=1)
    now = int(time.time() * 1000)
    return seal_message(key, "presence", status, now_ms=now + future_ms)  # type: ignore[arg-type]


async def attack(args: argparse.Namespace) -> None:
    pair = create_new_key_pair()
    host = new_host(key_pair=pair, listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")])
    router = GossipSub(protocols=[PROTOCOL_ID_V11, PROTOCOL_ID], degree=6, degree_low=4,
                       degree_high=12, heartbeat_interval=1, spam_protection_enabled=False,
                       eclipse_protection_enabled=False)
    pubsub = Pubsub(host, router, strict_signing=True)
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        async with background_trio_service(pubsub), background_trio_service(router):
            await pubsub.wait_until_ready()
            connected = []
            for addr in args.connect:
                info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
                with trio.move_on_after(10):
                    await host.connect(info)
                    connected.append(info.peer_id.to_base58())
            await pubsub.subscribe(args.topic)
            with trio.move_on_after(15):
                while not router.mesh.get(args.topic):  # noqa: ASYNC110 - library state
                    await trio.sleep(0.1)
            t0 = time.monotonic()
            sent = 0
            for _ in range(args.count):
                try:
                    await pubsub.publish(args.topic, payloads(args.kind, pair.private_key,
                                                              args.future_ms))
                except Exception:  # noqa: BLE001 - a banned attacker's writes fail: keep going
                    pass
                sent += 1
                if sent % 200 == 0:
                    await trio.lowlevel.checkpoint()
            print(json.dumps({"sent": sent, "seconds": round(time.monotonic() - t0, 2),
                              "connected": connected,
                              "peer_id": host.get_id().to_base58()}), flush=True)
            await trio.sleep_forever()


def main() -> int:
    parser = argparse.ArgumentParser(prog="flood_attacker")
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--count", type=int, default=5_000)
    parser.add_argument("--future-ms", type=int, default=4_000)
    parser.add_argument("--topic", default=PRESENCE_TOPIC)
    parser.add_argument("--kind", choices=["future", "junk"], default="future")
    trio.run(attack, parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
