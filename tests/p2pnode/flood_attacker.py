"""A hostile gossip peer (test and benchmark use only; not part of the daemon).

    python -m tests.p2pnode.flood_attacker --connect MADDR [--connect MADDR ...]
        [--count N] [--future-ms MS] [--topic T] [--kind future|junk]

Connects to the given daemons with a bare py-libp2p host and subscribes to ``--topic``
(the presence topic by default), then floods each daemon with ``--count`` gossip
messages as fast as the connection takes them. ``future``: validly signed presence
envelopes dated ``--future-ms`` ahead, each with a fresh nonce. ``junk``: random bytes.
Every message is a correctly signed pubsub message from this host, so it passes the
daemon's pubsub checks and reaches its topic validator.

The flood does not go through ``Pubsub.publish``: py-libp2p 0.8.1 queues outbound RPCs
in a per-peer queue of 32 (``rpc_queue.OutBoundQueueSize``) and drops, silently, what
does not fit, so a ``publish`` loop "sent" 3,000 messages in 0.65 s while 2,968 of
them never left this process. Instead each message is one RPC frame written straight
to a pubsub stream of its own per target; a write waits for the connection, so a
message counted as sent was handed to the transport.

Output, one JSON object per line: ``{"sent": N, "seconds": S, "connected": [...],
"peer_id": ..., "sent_to": {peer: n}, "failed": {peer: error}}`` once the flood is
over (a target that disconnects us ends its part of the flood early), then
``{"disconnected": peer}`` whenever a target's connection goes away. It then stays up
until killed.
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
from libp2p.abc import IHost, INetStream
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair, PrivateKey
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.validators import PUBSUB_SIGNING_PREFIX
from libp2p.tools.anyio_service import background_trio_service
from libp2p.utils.varint import encode_varint_prefixed

from protocols.envelope import seal_message
from protocols.pb import distro_pb2 as pb
from protocols.presence import TOPIC as PRESENCE_TOPIC

WATCH_INTERVAL_S = 0.1
"""How often the attacker looks for targets that disconnected it."""


def payload(kind: str, key: PrivateKey, future_ms: int) -> bytes:
    if kind == "junk":
        return os.urandom(200)
    status = pb.Presence(health=99.0, accepting=True, seq=1)
    now = int(time.time() * 1000)
    return seal_message(key, "presence", status, now_ms=now + future_ms)


def frame(host: IHost, pair: KeyPair, topic: str, data: bytes, seqno: int) -> bytes:
    """One varint-prefixed RPC holding one pubsub message signed as Pubsub.publish does."""
    msg = rpc_pb2.Message(data=data, topicIDs=[topic], from_id=host.get_id().to_bytes(),
                          seqno=seqno.to_bytes(8, "big"))
    msg.signature = pair.private_key.sign(PUBSUB_SIGNING_PREFIX.encode()
                                          + msg.SerializeToString())
    msg.key = pair.public_key.serialize()
    return bytes(encode_varint_prefixed(rpc_pb2.RPC(publish=[msg]).SerializeToString()))


async def flood(host: IHost, pair: KeyPair, targets: list[ID],
                args: argparse.Namespace) -> dict[str, object]:
    """Write ``args.count`` frames to each target; stop a target at its first failure.

    ``sent`` counts the messages written to at least one target.
    """
    streams: dict[ID, INetStream] = {}
    sent_to = {t.to_base58(): 0 for t in targets}
    failed: dict[str, str] = {}
    for t in targets:
        try:
            streams[t] = await host.new_stream(t, [TProtocol(PROTOCOL_ID_V11),
                                                   TProtocol(PROTOCOL_ID)])
        except Exception as exc:  # noqa: BLE001 - reported, the rest still flood
            failed[t.to_base58()] = repr(exc)
    # Far from the seqnos the attacker's own Pubsub uses (it counts up from 0).
    seqno = int.from_bytes(os.urandom(4), "big") << 32
    t0 = time.monotonic()
    sent = 0
    for _ in range(args.count):
        if not streams:
            break
        seqno += 1
        data = frame(host, pair, args.topic, payload(args.kind, pair.private_key,
                                                     args.future_ms), seqno)
        delivered = False
        for t, stream in list(streams.items()):
            try:
                await stream.write(data)
            except Exception as exc:  # noqa: BLE001 - a banned attacker's writes fail
                failed[t.to_base58()] = repr(exc)
                del streams[t]
            else:
                sent_to[t.to_base58()] += 1
                delivered = True
        sent += delivered
    return {"sent": sent, "seconds": round(time.monotonic() - t0, 2), "sent_to": sent_to,
            "failed": failed}


async def watch_disconnects(host: IHost, targets: list[ID]) -> None:
    """Print ``{"disconnected": peer}`` once for each target whose connection is gone."""
    left = set(targets)
    while left:
        connected = set(host.get_network().connections)
        for t in sorted(left - connected, key=str):
            print(json.dumps({"disconnected": t.to_base58()}), flush=True)
            left.discard(t)
        await trio.sleep(WATCH_INTERVAL_S)


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
            targets: list[ID] = []
            for addr in args.connect:
                info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
                with trio.move_on_after(10):
                    await host.connect(info)
                    targets.append(info.peer_id)
            await pubsub.subscribe(args.topic)
            report = await flood(host, pair, targets, args)
            report.update(connected=[t.to_base58() for t in targets],
                          peer_id=host.get_id().to_base58())
            print(json.dumps(report), flush=True)
            await watch_disconnects(host, targets)
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
