"""One round of a job, as a pure state machine fed with events.

The owner's network code feeds events in (``start``, then ``feed`` with the typed
events of ``records``, and ``tick``) and carries out the actions that come back;
the machine itself does no I/O and reads no clock, so a 100-trainer round runs in
milliseconds under test.

The work of a round is split into *slots*: slot ``i`` is one trainer's share of
the data (its chunks). Each slot is held by a peer; when the holder vanishes,
refuses, or sends an update that fails validation, the slot passes to a spare.
When the round is at risk (``backup_after_s`` passed), every slot still pending
also gets a backup holder; the first valid result for a slot wins.

The round closes when every slot has an accepted update, as soon as ``quorum``
slots have one, or at the deadline when at least ``min_updates`` have one; at the
deadline with fewer it fails, and the owner runs it again.

Reputation: the machine charges only final facts as they happen (``rejected``,
``vanished``, ``late`` for a result that came after its slot was filled,
``cheated`` for an update a comparison found out of line). An accepted update is
charged once, when the round closes and its verdict is known (it may still be
dropped as an outlier or outvoted); see ``Accepted.late``.

Verification (docs/verification.md): a *redundant* slot (``replicas``) is trained
by two holders on the same task; once both updates passed their checks the
machine asks for a :class:`Compare`, and the owner answers with a ``Compared``
event. Agreeing replicas are both accepted, each standing for half the slot's
samples. Disagreeing ones get an arbiter (a spare, or the owner itself when none
is left): whoever is out of line is charged ``cheated`` and dropped. A *checked*
slot (``spot``), or any result from a peer on ``probation``, is compared with the
owner's own re-run of the task the same way. A cheater's other results in the
round are dropped too, and it gets no further task in it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from protocols.job.actions import (
    Accepted,
    Action,
    Charge,
    CheckUpdate,
    Close,
    Compare,
    Fail,
    SendTask,
)
from protocols.job.records import (
    Announced,
    Checked,
    Compared,
    Duplicate,
    Gone,
    Refused,
    RoundEvent,
    Verdict,
)

__all__ = ["Accepted", "Action", "Charge", "CheckUpdate", "Close", "Compare", "Fail", "Round",
           "SendTask"]
"""The actions (:mod:`protocols.job.actions`) are re-exported: callers say ``rounds.SendTask``."""


@dataclass
class _Slot:
    holders: set[str] = field(default_factory=set)
    announced: set[str] = field(default_factory=set)
    result: tuple[Accepted, ...] | None = None
    backed_up: bool = False
    want: int = 1  # distinct results compared before the slot is settled
    spot: bool = False
    checked: dict[str, Accepted] = field(default_factory=dict)  # passed, not yet settled
    comparing: bool = False
    owner_judged: bool = False


class Round:
    """The state of one round. Every method returns the actions to carry out, in order."""

    def __init__(
        self,
        number: int,
        holders: Mapping[int, str],
        spares: Iterable[str] = (),
        *,
        quorum: int,
        min_updates: int,
        deadline_s: float,
        backup_after_s: float | None,
        now: float,
        replicas: Mapping[int, str] | None = None,
        spot: Iterable[int] = (),
        probation: Iterable[str] = (),
    ) -> None:
        if not holders:
            raise ValueError("a round needs at least one slot")
        replicas = dict(replicas or {})
        if any(s not in holders or holders[s] == p for s, p in replicas.items()):
            raise ValueError("a replica needs a slot and a holder of its own")
        if not 1 <= min_updates <= quorum <= len(holders):
            raise ValueError("need 1 <= min_updates <= quorum <= slots")
        self.number = number
        self.quorum = quorum
        self.min_updates = min_updates
        self.started = now
        self.deadline = now + deadline_s
        self.backup_at = None if backup_after_s is None else now + backup_after_s
        self.spares: deque[str] = deque(spares)
        self.slots = {slot: _Slot(holders={peer}) for slot, peer in holders.items()}
        for slot, peer in replicas.items():
            self.slots[slot].holders.add(peer)
            self.slots[slot].want = 2
        for slot in spot:
            if slot in self.slots:
                self.slots[slot].spot = True
        self.probation = set(probation)
        self.cheaters: list[str] = []
        self.rejected: list[str] = []
        self.gone_peers: set[str] = set()
        self.done = False

    def start(self) -> list[Action]:
        """Send every slot's task to its holder (and replica)."""
        return [
            SendTask(p, i, replica=s.want > 1)
            for i, s in self.slots.items()
            for p in sorted(s.holders)
        ]

    def feed(self, event: RoundEvent, now: float) -> list[Action]:
        """Apply one event from the network; returns the actions it causes."""
        if isinstance(event, Announced):
            return self.announced(event.update.peer, event.update.sha256)
        if isinstance(event, Checked):
            u = event.update
            return self.checked(u.peer, u.slot, u.sha256, u.verdict is Verdict.CHECKED, now)
        if isinstance(event, Duplicate):
            return [a for p in event.peers for a in self.suspect(p)]
        if isinstance(event, Compared):
            return self.compared(event.slot, event.agreed, event.outliers, event.verified, now)
        if isinstance(event, Refused):
            return self.refused(event.peer, now)
        if isinstance(event, Gone):
            return self.gone(event.peer, now)
        return self.add_spare(event.peer)

    def add_spare(self, peer: str) -> list[Action]:
        """A new trainer is available; give it an orphaned slot if there is one."""
        if self.done or peer in self.gone_peers or peer in self.cheaters or self._holds(peer):
            return []
        self.spares.append(peer)
        return self._fill_orphans()

    def announced(self, peer: str, sha256: str) -> list[Action]:
        """``peer`` announced an update; check it if it holds a slot and is its first."""
        if self.done:
            return []
        for i, s in self.slots.items():
            if peer in s.holders and peer not in s.announced and s.result is None:
                s.announced.add(peer)
                return [CheckUpdate(peer, i, sha256)]
        return []

    def checked(self, peer: str, slot: int, sha256: str, ok: bool, now: float) -> list[Action]:
        """The owner validated ``peer``'s update for ``slot``: ``ok`` or rejected."""
        s = self.slots.get(slot)
        if self.done or s is None or peer not in s.holders:
            return []
        if not ok:
            self.rejected.append(sha256)
            s.holders.discard(peer)
            return [
                Charge(peer, "rejected"),
                *self._settle(slot, s),
                *self._fill_orphans(),
                *self._maybe_end(now),
            ]
        if s.result is not None:
            return [Charge(peer, "late")]
        late = self.backup_at is not None and now > self.backup_at
        s.checked[peer] = Accepted(peer, slot, sha256, late)
        return [*self._settle(slot, s), *self._maybe_end(now)]

    def compared(
        self,
        slot: int,
        agreed: Iterable[str],
        outliers: Iterable[str],
        verified: bool,
        now: float,
    ) -> list[Action]:
        """The owner's answer to a :class:`Compare` for ``slot``."""
        s = self.slots.get(slot)
        if self.done or s is None or not s.comparing:
            return []
        s.comparing = False
        agreed = [p for p in agreed if p in s.checked]
        actions: list[Action] = []
        for peer in outliers:
            actions += self._caught(peer)
        if agreed:
            share = 1.0 / len(agreed)
            s.result = tuple(
                Accepted(p, slot, s.checked[p].sha256, s.checked[p].late, verified, share)
                for p in sorted(agreed)
            )
            s.checked.clear()
        elif not list(outliers):
            if s.want == 2 and not s.owner_judged:
                s.want = 3  # replicas disagree: an arbiter decides
            elif s.checked:
                # Even an arbiter left it open: the owner re-runs the task and decides.
                s.comparing, s.owner_judged = True, True
                return [*actions, Compare(slot, tuple(sorted(s.checked)), owner=True)]
        actions += self._settle(slot, s)
        return [*actions, *self._fill_orphans(), *self._maybe_end(now)]

    def gone(self, peer: str, now: float) -> list[Action]:
        """``peer`` vanished (dead, silent, unreachable): its pending slots pass on."""
        if self.done:
            return []
        self.gone_peers.add(peer)
        if peer in self.spares:
            self.spares.remove(peer)
        lost = [
            s
            for s in self.slots.values()
            if peer in s.holders and s.result is None and peer not in s.checked
        ]
        for s in lost:
            s.holders.discard(peer)
        if not lost:
            return []
        settle = [a for i, s in self.slots.items() if s in lost for a in self._settle(i, s)]
        return [Charge(peer, "vanished"), *settle, *self._fill_orphans(), *self._maybe_end(now)]

    def refused(self, peer: str, now: float) -> list[Action]:
        """``peer`` refused its task: like ``gone`` but without the reputation charge."""
        actions: list[Action] = [a for a in self.gone(peer, now) if not isinstance(a, Charge)]
        self.gone_peers.discard(peer)
        return actions

    def tick(self, now: float) -> list[Action]:
        """Time passed: start backups once the round is at risk; end it at the deadline."""
        if self.done:
            return []
        actions: list[Action] = []
        if self.backup_at is not None and now >= self.backup_at:
            for i, s in self.slots.items():
                if s.result is None and not s.backed_up and self.spares:
                    s.backed_up = True
                    spare = self.spares.popleft()
                    s.holders.add(spare)
                    actions.append(SendTask(spare, i, backup=True))
        return actions + self._maybe_end(now)

    @property
    def accepted(self) -> list[Accepted]:
        """The accepted updates so far, in slot order."""
        return [a for _, s in sorted(self.slots.items()) if s.result is not None for a in s.result]

    @property
    def settled(self) -> int:
        """Slots with an accepted result."""
        return sum(1 for s in self.slots.values() if s.result is not None)

    def pending_peers(self) -> set[str]:
        """Peers holding a slot that has no accepted update yet."""
        return {p for s in self.slots.values() if s.result is None for p in s.holders}

    def _holds(self, peer: str) -> bool:
        return any(peer in s.holders for s in self.slots.values()) or peer in self.spares

    def suspect(self, peer: str) -> list[Action]:
        """Have ``peer``'s work in this round checked by the owner's re-run.

        Its coming results are compared; a result it already settled unverified
        is taken back and compared now.
        """
        if self.done or peer in self.cheaters:
            return []
        self.probation.add(peer)
        actions: list[Action] = []
        for i, s in self.slots.items():
            if s.result is not None and any(a.peer == peer and not a.verified for a in s.result):
                s.checked = {a.peer: a for a in s.result}
                s.result = None
                actions += self._settle(i, s)
        return actions

    def _caught(self, peer: str) -> list[Action]:
        """``peer`` cheated: charge it once, drop all its work in this round."""
        if peer in self.cheaters:
            return []
        self.cheaters.append(peer)
        if peer in self.spares:
            self.spares.remove(peer)
        actions: list[Action] = [Charge(peer, "cheated")]
        for i, s in self.slots.items():
            s.holders.discard(peer)
            s.checked.pop(peer, None)
            if s.result is not None and any(a.peer == peer for a in s.result):
                # A result it had settled with: the slot is open again, and whoever
                # agreed with the cheater is no longer verified.
                s.checked = {a.peer: Accepted(a.peer, i, a.sha256, a.late) for a in s.result
                             if a.peer != peer}
                s.result = None
                actions += self._settle(i, s)
        return actions

    def _settle(self, slot: int, s: _Slot) -> list[Action]:
        """Move ``slot`` on: compare what came in, or find the holders still needed."""
        if s.result is not None or s.comparing:
            return []
        results = tuple(sorted(s.checked))
        working = s.holders - set(s.checked)
        if s.want == 1 and results:
            peer = results[0]
            if s.spot or len(results) > 1 or any(p in self.probation for p in results):
                s.comparing, s.owner_judged = True, True
                return [Compare(slot, results, owner=True)]
            s.result = (s.checked.pop(peer),)
            s.checked.clear()
            return []
        if s.want > 1 and len(results) >= s.want:
            s.comparing = True
            return [Compare(slot, results, owner=False)]
        actions: list[Action] = []
        while len(results) + len(working) < s.want and self.spares:
            spare = self.spares.popleft()
            s.holders.add(spare)
            working.add(spare)
            actions.append(SendTask(spare, slot, replica=s.want > 1))
        if results and not working:
            # Nobody left to reproduce it: the owner judges what came in itself.
            s.comparing, s.owner_judged = True, True
            actions.append(Compare(slot, results, owner=True))
        return actions

    def _fill_orphans(self) -> list[Action]:
        actions: list[Action] = []
        for i, s in sorted(self.slots.items()):
            if s.result is None and not s.holders and self.spares:
                spare = self.spares.popleft()
                s.holders.add(spare)
                actions.append(SendTask(spare, i, replica=s.want > 1))
                actions += self._settle(i, s)
        return actions

    def _maybe_end(self, now: float) -> list[Action]:
        accepted = self.accepted
        settled = self.settled
        reason = ""
        if settled == len(self.slots):
            reason = "complete"
        elif settled >= self.quorum:
            reason = "quorum"
        elif now >= self.deadline or not self.pending_peers():
            if settled >= self.min_updates:
                reason = "deadline" if now >= self.deadline else "no_trainers"
            else:
                self.done = True
                return [Fail("deadline" if now >= self.deadline else "no_trainers")]
        if not reason:
            return []
        self.done = True
        return [Close(tuple(accepted), tuple(self.rejected), reason, tuple(self.cheaters))]
