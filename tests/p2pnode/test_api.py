"""The extension points other packages use, on two real nodes in one trio run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from libp2p.peer.id import ID

from p2pnode.config import Config
from p2pnode.control import call
from p2pnode.errors import RequestError
from p2pnode.node import Node
from tests.conftest import wait_until

ECHO = "/distro-train/test-echo/1.0.0"


def pair_configs(tmp_path: Path) -> tuple[Config, Config]:
    a = Config.for_tests(tmp_path / "a").validate()
    b = Config.for_tests(tmp_path / "b")
    b.control.max_peer_message_bytes = 1000
    return a, b


async def test_request_subscribe_service_and_routes(tmp_path: Path) -> None:
    cfg_a, cfg_b = pair_configs(tmp_path)
    a = Node(cfg_a)
    started: list[str] = []

    async def service(node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        started.append(node.peer_id.to_base58())
        task_status.started()

    async def hello(params: dict[str, Any]) -> str:
        return f"hello {params['name']}"

    a.add_service(service)
    a.routes.add("test.hello", hello, required={"name": str})
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run)
        cfg_b.node.bootstrap = [a.addrs()[0]]
        b = Node(cfg_b.validate())

        async def echo(data: bytes, from_peer: ID) -> bytes:
            if data == b"slow":
                await trio.sleep_forever()
            return from_peer.to_base58().encode() + b":" + data

        b.set_stream_handler(ECHO, echo)
        got: trio.MemorySendChannel[tuple[bytes, ID]]
        got, got_recv = trio.open_memory_channel[tuple[bytes, ID]](10)

        async def on_topic(data: bytes, from_peer: ID) -> None:
            await got.send((data, from_peer))

        b.subscribe("/distro-train/test/1", on_topic)
        await nursery.start(b.run)
        assert started == [a.peer_id.to_base58()]

        answer = await a.request(b.peer_id, ECHO, b"ping")
        assert answer == a.peer_id.to_base58().encode() + b":ping"
        with pytest.raises(RequestError) as info:
            await a.request(b.peer_id, ECHO, b"slow", timeout=0.5)
        assert info.value.reason == "timeout"
        with pytest.raises(RequestError) as info:
            await a.request(b.peer_id, ECHO, b"x" * 5000)  # b's limit is 1000
        assert info.value.reason == "closed"

        with trio.fail_after(20):
            while True:
                await a.publish("/distro-train/test/1", b"news")
                with trio.move_on_after(0.5):
                    data, sender = await got_recv.receive()
                    break
        assert (data, sender) == (b"news", a.peer_id)

        # Subscribing again replaces the handler; unsubscribing stops delivery.
        replaced: list[bytes] = []

        async def on_topic2(data: bytes, from_peer: ID) -> None:
            replaced.append(data)

        b.subscribe("/distro-train/test/1", on_topic2)
        await a.publish("/distro-train/test/1", b"second")
        await wait_until(lambda: replaced == [b"second"], 20)
        await b.unsubscribe("/distro-train/test/1")
        assert "/distro-train/test/1" not in b.status()["topics"]

        await wait_until(lambda: bool(a.peers() and b.peers()), 20)
        [seen] = a.peers()
        assert seen.peer_id == b.peer_id and 0 <= seen.health <= 100 and seen.addrs
        result = await trio.to_thread.run_sync(
            lambda: call(cfg_a.node.data_dir, "test.hello", {"name": "x"}))
        assert result == "hello x"
        nursery.cancel_scope.cancel()
    assert not (cfg_a.node.data_dir / "control.sock").exists()
