"""py-libp2p 0.8.1's per-message CPU costs, cut in one place (docs/libp2p.md#per-message-cost).

Profiled on one daemon of 21 (2 gossip messages a second across the network, presence
on top; CPU-time profile): each gossip message reaches a daemon once per mesh
neighbour (about 7 copies), and every copy paid for

- a walk of the pubsub service's whole task tree (``TrioManager._find_parent_task``,
  called by ``manager.run_task`` for every received message: O(tasks), and the tasks
  grow with the peers): :func:`index_manager_tasks` finds the parent through a map
  from trio task to service task instead;
- the sender's signed peer record, carried in every RPC and verified (Ed25519, two
  protobuf decodes, the peerstore's addresses cleared and re-added) twice per RPC with
  control messages: :func:`cache_sender_records` skips bytes already consumed from
  that peer within ``RECORD_RECHECK_S``;
- a yamux WINDOW_UPDATE frame (encrypted, one ``send(2)``) after nearly every read,
  even with ``PY_YAMUX_RELEASE_ON_READ=0``: its "partial slack" branch hands back any
  slack at once: :func:`batch_yamux_window_updates` keeps go-yamux's rule (an update
  once half the window is consumed).

:func:`apply` installs all three (idempotent); :mod:`p2pnode.host` calls it at import.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from typing import Any

import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.pubsub import gossipsub as _gossipsub
from libp2p.pubsub import pubsub as _pubsub
from libp2p.pubsub.pb.rpc_pb2 import RPC
from libp2p.stream_muxer.yamux.yamux import YamuxStream
from libp2p.tools.anyio_service.trio_manager import TrioManager
from libp2p.tools.anyio_service.trio_tasks import FunctionTask

RECORD_RECHECK_S = 60.0
"""A peer's unchanged signed record is consumed again (addresses' TTL refreshed) after this."""
RECORD_CACHE_PEERS = 4096
"""Peers whose last consumed record bytes are remembered (least recently used go first)."""

_TASKS: weakref.WeakKeyDictionary[trio.lowlevel.Task, weakref.ref[FunctionTask]] = (
    weakref.WeakKeyDictionary())
"""trio task -> its service task, both weakly held (a task refers to its trio task, so a
strong value would keep every entry alive forever)."""
_applied = False


def index_manager_tasks() -> None:
    """Make ``TrioManager._find_parent_task`` O(depth) instead of O(all tasks).

    Every ``FunctionTask`` records its trio task when it starts; the lookup maps the
    current trio task to its ``FunctionTask`` and accepts it only when that task's
    root is one of this manager's root tasks (the original searched only this
    manager's tree, so a task of another service is no parent here).
    """
    prop = FunctionTask.trio_task
    assert isinstance(prop, property) and prop.fget is not None and prop.fset is not None
    getter, setter = prop.fget, prop.fset

    def set_trio_task(self: FunctionTask, value: trio.lowlevel.Task) -> None:
        setter(self, value)
        _TASKS[value] = weakref.ref(self)

    def find_parent_task(self: TrioManager, trio_task: trio.lowlevel.Task) -> Any:
        ref = _TASKS.get(trio_task)
        task = ref() if ref is not None else None
        if task is None:
            return None
        root: Any = task
        while root.parent is not None:
            root = root.parent
        return task if root in self._root_tasks else None

    FunctionTask.trio_task = property(getter, set_trio_task)
    TrioManager._find_parent_task = find_parent_task


class _RecordCache:
    """The last signed-record bytes consumed from each peer, per host (bounded LRU)."""

    def __init__(self) -> None:
        self.hosts: weakref.WeakKeyDictionary[IHost, OrderedDict[ID, tuple[bytes, float]]] = (
            weakref.WeakKeyDictionary())
        self.skipped = 0

    def fresh(self, host: IHost, peer_id: ID, record: bytes) -> bool:
        """Whether these very bytes were consumed from ``peer_id`` lately."""
        entry = self.hosts.get(host, {}).get(peer_id)
        if entry is None or entry[0] != record or time.monotonic() - entry[1] > RECORD_RECHECK_S:
            return False
        self.skipped += 1
        return True

    def remember(self, host: IHost, peer_id: ID, record: bytes) -> None:
        """Note that ``record`` from ``peer_id`` was just consumed by ``host``."""
        seen = self.hosts.setdefault(host, OrderedDict())
        seen[peer_id] = (record, time.monotonic())
        seen.move_to_end(peer_id)
        while len(seen) > RECORD_CACHE_PEERS:
            seen.popitem(last=False)


RECORDS = _RecordCache()


def cache_sender_records() -> None:
    """Consume a peer's signed record once, not on every RPC it sends.

    Only the very bytes that were accepted from that same peer (and host) are
    skipped, and only for ``RECORD_RECHECK_S``; a changed or new record goes through
    the library's full check.
    """
    inner = _pubsub.maybe_consume_signed_record

    def maybe_consume(msg: RPC, host: IHost, peer_id: ID) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        record = msg.senderRecord
        if RECORDS.fresh(host, peer_id, record):
            return True
        ok = bool(inner(msg, host, peer_id))
        if ok:
            RECORDS.remember(host, peer_id, record)
        return ok

    _pubsub.maybe_consume_signed_record = maybe_consume
    _gossipsub.maybe_consume_signed_record = maybe_consume


def batch_yamux_window_updates() -> None:
    """Send a yamux WINDOW_UPDATE once half the window is consumed (go-yamux's rule).

    While what the reader consumed is still under the threshold, the read is only
    counted (``_pending_recv_release``); the library's own code runs once it is not
    (or for calls without a read), and grants everything consumed in one frame.
    """
    inner = YamuxStream._auto_tune_and_send_window_update

    async def window_update(self: YamuxStream, *, bytes_read: int = 0) -> None:
        if bytes_read > 0:
            buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
            consumed = self.target_recv_window - (self.recv_window + buffered)
            threshold = self._grow_threshold()
            if consumed < threshold and self._pending_recv_release + bytes_read < threshold:
                self._pending_recv_release += bytes_read
                return
        await inner(self, bytes_read=bytes_read)

    YamuxStream._auto_tune_and_send_window_update = window_update


def apply() -> None:
    """Install every workaround of this module once."""
    global _applied
    if _applied:
        return
    _applied = True
    index_manager_tasks()
    cache_sender_records()
    batch_yamux_window_updates()
