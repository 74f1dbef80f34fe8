"""The per-message workarounds (p2pnode/hotpath.py) and the size-tuned gossip (pure)."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest
import trio
import trio.testing
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import YamuxStream
from libp2p.tools.anyio_service import Service, background_trio_service

import p2pnode.host  # noqa: F401 - applies the workarounds, as a daemon does
from p2pnode import hotpath
from p2pnode.config import Config, GossipConfig
from p2pnode.errors import ConfigError
from p2pnode.host import gossip_heartbeat_s


def test_heartbeat_grows_with_the_network_within_its_bounds() -> None:
    cfg = GossipConfig()
    beats = {n: gossip_heartbeat_s(cfg, n) for n in (0, 5, 14, 20, 30, 49, 200)}
    assert beats == {0: 1, 5: 1, 14: 1, 20: 2, 30: 3, 49: 5, 200: 5}
    # IHAVE sent per heartbeat is max(6, N/4): per second it stays within 6 per topic up
    # to 4 x 6 x max_heartbeat_s = 120 peers (then it grows as N / 20).
    per_second = [max(6, n / 4) / gossip_heartbeat_s(cfg, n) for n in range(1, 121)]
    assert max(per_second) <= 6


@pytest.mark.parametrize(("field", "value"), [("mesh_degree_high", 5), ("max_heartbeat_s", 0)])
def test_gossip_config_refuses_inconsistent_values(field: str, value: int) -> None:
    cfg = Config()
    setattr(cfg.gossip, field, value)
    with pytest.raises(ConfigError):
        cfg.validate()


class _Tree(Service):
    """Starts a child from inside a task, and records what the manager made of it."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.parents: dict[str, Any] = {}

    async def run(self) -> None:
        self.manager.run_task(self._outer)
        await self.done.wait()

    async def _outer(self) -> None:
        self.manager.run_task(self._inner)
        await trio.sleep_forever()

    async def _inner(self) -> None:
        me = hotpath._TASKS[trio.lowlevel.current_task()]()
        self.parents["inner"] = me.parent
        self.done.set()


async def test_a_task_started_inside_a_task_is_its_child_and_outsiders_are_roots() -> None:
    tree = _Tree()
    async with background_trio_service(tree) as manager:
        with trio.fail_after(5):
            await tree.done.wait()
        outer = tree.parents["inner"]
        assert outer is not None and outer.name.endswith("_outer")
        assert outer.parent is not None and outer.parent.parent is None  # run(), a root
        assert outer.parent in manager._root_tasks
        # This test's own task belongs to no manager: its tasks are root tasks.
        assert manager._find_parent_task(trio.lowlevel.current_task()) is None
        other = _Tree()
        async with background_trio_service(other) as second:
            with trio.fail_after(5):
                await other.done.wait()
            # A task of another service is no parent in this one.
            inner_of_other = other.parents["inner"]
            assert second._find_parent_task(inner_of_other.trio_task) is inner_of_other
            assert manager._find_parent_task(inner_of_other.trio_task) is None
            second.cancel()
        manager.cancel()


class _Host:
    """Stands for a libp2p host: only its identity matters to the cache."""


class _Many(Service):
    """Runs ``n`` short tasks, as pubsub does one per received message."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.finished = 0
        self.all_done = trio.Event()

    async def run(self) -> None:
        for _ in range(self.n):
            self.manager.run_task(self._one)
        await trio.sleep_forever()

    async def _one(self) -> None:
        await trio.lowlevel.checkpoint()
        self.finished += 1
        if self.finished == self.n:
            self.all_done.set()


async def test_finished_tasks_leave_the_parent_map() -> None:
    many = _Many(500)
    async with background_trio_service(many) as manager:
        with trio.fail_after(10):
            await many.all_done.wait()
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        assert len(hotpath._TASKS) < 50  # run() and a few others, not the 500
        manager.cancel()


def _host() -> Any:
    return _Host()


def test_a_record_is_skipped_only_when_the_same_bytes_came_from_the_same_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = hotpath._RecordCache()
    now = [1000.0]
    monkeypatch.setattr(hotpath.time, "monotonic", lambda: now[0])
    host, other_host = _host(), _host()
    peer = ID.from_pubkey(create_new_key_pair().public_key)
    stranger = ID.from_pubkey(create_new_key_pair().public_key)
    assert not cache.fresh(host, peer, b"record-1")
    cache.remember(host, peer, b"record-1")
    assert cache.fresh(host, peer, b"record-1")
    assert not cache.fresh(host, peer, b"record-2")  # a new record is checked
    assert not cache.fresh(host, stranger, b"record-1")  # someone else's copy is checked
    assert not cache.fresh(other_host, peer, b"record-1")  # per host
    now[0] += hotpath.RECORD_RECHECK_S + 1
    assert not cache.fresh(host, peer, b"record-1")  # consumed again now and then


class _Window:
    """Just the fields the batching reads; the library's own code would need a real stream."""

    def __init__(self) -> None:
        self.stream_id = 1
        self.conn = SimpleNamespace(stream_buffers={})
        self.target_recv_window = 256 * 1024
        self.recv_window = self.target_recv_window
        self._pending_recv_release = 0

    def _grow_threshold(self) -> int:
        return self.target_recv_window // 2

    def receive_and_read(self, n: int) -> None:
        self.recv_window -= n


async def test_window_updates_wait_until_half_the_window_is_consumed() -> None:
    window = _Window()
    update = YamuxStream._auto_tune_and_send_window_update
    for _ in range(200):  # 200 reads of 500 bytes: 100 kB < half of 256 KiB
        window.receive_and_read(500)
        await update(window, bytes_read=500)  # type: ignore[arg-type]
    assert window._pending_recv_release == 100_000
    window.receive_and_read(40_000)
    with pytest.raises(AttributeError):  # past half: the library's update runs
        await update(window, bytes_read=40_000)  # type: ignore[arg-type]
