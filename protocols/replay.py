"""The replay guard: refuses a signed message seen before or dated outside a window.

It cannot be filled, pushed or poisoned by a flood of validly signed messages:

- A timestamp is accepted from ``window_s`` in the past to ``future_skew_s`` in the
  future (a few seconds: clocks differ, messages do not travel back in time). A
  message dated later can never enter memory, so no entry outlives ``window_s +
  future_skew_s``.
- Memory is bounded twice: at most ``per_sender`` entries per signer and
  ``capacity`` in all. A signer over its quota loses its own oldest entry, and only
  its own floor rises (its messages dated at or before that entry are refused as
  ``stale``): a flooder pushes only itself. When the whole guard is full, the entry
  with the *oldest timestamp* is forgotten and, again, only its signer's floor rises.
  Honest fresh traffic is dated later than what is forgotten, so it keeps flowing.
- Per-signer floors are bounded too (``max_floors``, default four times ``capacity``:
  a floor costs a fraction of an entry). When the oldest must go, the
  global floor takes its place, but never closer than ``max_floor_lag_s`` to now:
  pushing it further would refuse honest messages, so past that point an attacker
  with that many identities could at worst replay a forgotten message, never block one.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from protocols.errors import EnvelopeError

NONCE_BYTES = 16

Entry = tuple[int, bytes]
"""(timestamp_ms, sender + nonce): one remembered message, shared by heap and queue."""


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class ReplayGuard:
    """Remembers (signer, nonce) of recent messages; see the module docstring.

    Args:
        window_s: How far in the past a timestamp may be.
        capacity: Most remembered messages in all.
        future_skew_s: How far in the future a timestamp may be.
        per_sender: Most remembered messages per signer (at most ``capacity``).
        max_floor_lag_s: The global floor stays at least this far behind now.
        max_floors: Most per-signer floors kept (default ``4 * capacity``).
        clock: Milliseconds since the epoch; the wall clock unless a test injects one.
    """

    def __init__(
        self,
        window_s: float = 120.0,
        capacity: int = 20_000,
        *,
        future_skew_s: float = 5.0,
        per_sender: int = 1_000,
        max_floor_lag_s: float = 30.0,
        max_floors: int | None = None,
        clock: Callable[[], int] = _wall_clock_ms,
    ) -> None:
        if capacity < 1 or per_sender < 1:
            raise ValueError("capacity and per_sender must be >= 1")
        self.window_ms = int(window_s * 1000)
        self.future_ms = int(future_skew_s * 1000)
        self.capacity = capacity
        self.per_sender = min(per_sender, capacity)
        self.max_floor_lag_ms = int(max_floor_lag_s * 1000)
        self.max_floors = 4 * capacity if max_floors is None else max_floors
        self.clock = clock
        self._seen: dict[bytes, int] = {}
        self._heap: list[Entry] = []
        self._by_sender: dict[bytes, deque[Entry]] = {}
        self._floors: OrderedDict[bytes, int] = OrderedDict()
        self._floor_ms = 0

    def __len__(self) -> int:
        return len(self._seen)

    def _now(self, now_ms: int | None) -> int:
        return self.clock() if now_ms is None else now_ms

    def check_window(self, timestamp_ms: int, now_ms: int | None = None) -> None:
        """Raise EnvelopeError ``stale`` unless ``timestamp_ms`` is inside the window."""
        now = self._now(now_ms)
        if timestamp_ms < now - self.window_ms or timestamp_ms > now + self.future_ms:
            raise EnvelopeError("stale", f"timestamp {timestamp_ms} vs now {now}")

    def precheck(self, sender: bytes, nonce: bytes, timestamp_ms: int,
                 now_ms: int | None = None) -> None:
        """Everything :meth:`check` refuses, without remembering anything.

        Raises:
            EnvelopeError: ``malformed`` nonce, ``stale`` timestamp (outside the window
                or below a floor), ``replay``. Never attributed to a sender: nothing
                here proves who signed the message.
        """
        if len(nonce) != NONCE_BYTES:
            raise EnvelopeError("malformed", f"nonce must be {NONCE_BYTES} bytes")
        self.check_window(timestamp_ms, now_ms)
        if timestamp_ms < max(self._floor_ms, self._floors.get(sender, 0)):
            raise EnvelopeError("stale", f"timestamp {timestamp_ms} below the replay floor")
        if sender + nonce in self._seen:
            raise EnvelopeError("replay")

    def check(self, sender: bytes, nonce: bytes, timestamp_ms: int,
              now_ms: int | None = None) -> None:
        """Remember (sender, nonce), or raise as :meth:`precheck` does."""
        now = self._now(now_ms)
        self.precheck(sender, nonce, timestamp_ms, now)
        self._expire(now)
        entry: Entry = (timestamp_ms, sender + nonce)
        self._seen[entry[1]] = timestamp_ms
        heapq.heappush(self._heap, entry)
        mine = self._by_sender.setdefault(sender, deque())
        mine.append(entry)
        if len(mine) > self.per_sender:
            self._forget(mine[0], now)
        while len(self._seen) > self.capacity:
            self._forget(self._pop_oldest(), now)
        if len(self._heap) > 2 * self.capacity + 64:
            self._compact()

    def _pop_oldest(self) -> Entry:
        """Pop the live entry with the oldest timestamp off the heap (skipping forgotten ones)."""
        while True:
            entry = heapq.heappop(self._heap)
            if self._seen.get(entry[1]) == entry[0]:
                return entry

    def _unlink(self, entry: Entry) -> bool:
        """Remove a live ``entry`` from memory; False if it was already gone."""
        ts, key = entry
        if self._seen.get(key) != ts:
            return False
        del self._seen[key]
        sender = key[:-NONCE_BYTES]
        mine = self._by_sender.get(sender)
        if mine is not None:
            if mine and mine[0] == entry:
                mine.popleft()
            elif entry in mine:
                mine.remove(entry)
            if not mine:
                del self._by_sender[sender]
        return True

    def _forget(self, entry: Entry, now: int) -> None:
        """Drop ``entry`` before it expired: its signer's floor rises past it."""
        if not self._unlink(entry):
            return
        sender = entry[1][:-NONCE_BYTES]
        floor = max(entry[0] + 1, self._floors.pop(sender, 0))
        self._floors[sender] = floor
        while len(self._floors) > self.max_floors:
            _, dropped = self._floors.popitem(last=False)
            bounded = min(dropped, now - self.max_floor_lag_ms)
            self._floor_ms = max(self._floor_ms, bounded)

    def _expire(self, now: int) -> None:
        """Forget entries and floors that the window refuses anyway."""
        horizon = now - self.window_ms
        while self._heap and self._heap[0][0] < horizon:
            self._unlink(heapq.heappop(self._heap))
        while self._floors:
            sender, floor = next(iter(self._floors.items()))
            if floor >= horizon:
                break
            del self._floors[sender]

    def _compact(self) -> None:
        self._heap = [(ts, key) for key, ts in self._seen.items()]
        heapq.heapify(self._heap)
        self._by_sender = {}
        for entry in sorted(self._heap):
            self._by_sender.setdefault(entry[1][:-NONCE_BYTES], deque()).append(entry)
