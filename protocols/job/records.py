"""The typed vocabulary of a job: states, round events and the update record.

One :class:`Update` is made when a trainer's announcement arrives and is carried,
filled in, until it becomes a row of the job store: the announcement sets who sent
what and where, the round machine names its slot, the owner's check sets its bytes
and verdict, and closing the round sets the final verdict. Events are what the
owner's network code feeds the pure round machine (``rounds.Round.feed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class JobState(StrEnum):
    """A job's durable state (the job store's ``state`` column)."""

    PREPARING = "preparing"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Phase(StrEnum):
    """What a live job is doing now (status only; not stored)."""

    PREPARING = "preparing"
    UPLOADING = "uploading"
    RECRUITING = "recruiting"
    TRAINING = "training"
    AGGREGATING = "aggregating"
    DONE = "done"
    FAILED = "failed"


class TrainerState(StrEnum):
    """One trainer's state in a job, as the owner last saw it."""

    OFFERED = "offered"
    SELECTED = "selected"
    ASSIGNED = "assigned"
    TRAINING = "training"
    ANNOUNCED = "announced"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    OUTVOTED = "outvoted"
    REFUSED = "refused"
    GONE = "gone"


class Verdict(StrEnum):
    """Where an update stands. ``CHECKED`` passed its own checks; the rest are final."""

    PENDING = "pending"
    CHECKED = "checked"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    OUTVOTED = "outvoted"


@dataclass
class Update:
    """One trainer's update for one round, from announcement to database row.

    Attributes:
        peer: The trainer (base58 peer id) that signed the announcement.
        sha256: Hash of the update bytes, as announced.
        url: Where the owner fetches it (unsealed from the announcement).
        train_seconds: The trainer's own report; shown, and used only to split the
            owner's own measured task time into training and transfer, clamped to it
            (``sizing.speed_of``).
        slot: The data slot the round machine matched it to (-1 until then).
        samples: The owner's own count of the slot's samples (the FedAvg weight);
            a trainer's self-reported count is never used.
        data: The fetched bytes, once checked (dropped after the round).
        verdict: See :class:`Verdict`.
        reason: Reason code of a rejection (``quality``, ``no_progress``, ...).
        late: Accepted after the round's backup time (charged ``late``).
        verified: Reproduced by a replica or by the owner's own re-run (see
            docs/verification.md); what payment and the end of quarantine need.
        share: Fraction of the slot's samples this update stands for in FedAvg
            (0.5 for each of two agreeing replicas: the slot's data counts once).
        cipher_sha256: Hash of the stored ciphertext of an encrypted update, else ""
            (``sha256`` is then the plaintext's: the update's identity).
        secret: The encrypted update's key, unsealed from the announcement.
    """

    peer: str
    sha256: str
    url: str
    train_seconds: float = 0.0
    slot: int = -1
    samples: int = 0
    data: bytes = b""
    verdict: Verdict = Verdict.PENDING
    reason: str = ""
    late: bool = False
    verified: bool = False
    share: float = 1.0
    cipher_sha256: str = ""
    secret: bytes = field(default=b"", repr=False)

    @property
    def key(self) -> tuple[str, int]:
        """(peer, slot): unique within a round, unlike the hash (copies share it)."""
        return (self.peer, self.slot)

    def row(self) -> tuple[str, str, int, int, str, str]:
        """The job store's ``updates`` row: (sha256, peer, slot, samples, verdict, reason)."""
        return (self.sha256, self.peer, self.slot, self.samples, str(self.verdict), self.reason)


@dataclass(frozen=True)
class _UpdateEvent:
    """An event about one update; each subclass is its own kind of event."""

    update: Update


class Announced(_UpdateEvent):
    """A slot holder announced an update (not yet fetched or checked)."""


class Checked(_UpdateEvent):
    """The owner finished checking ``update``; its verdict says how it went."""


@dataclass(frozen=True)
class Compared:
    """The owner compared the updates of ``slot`` (see ``rounds.Compare``).

    ``agreed``: the peers whose updates are in line (accepted, verified);
    ``outliers``: the peers out of line (cheated). Both empty: two replicas
    disagree and nobody can tell which is wrong yet (an arbiter is needed).
    ``verified`` is false when the comparison could not be made (then ``agreed``
    holds every compared peer, accepted unverified).
    """

    slot: int
    agreed: tuple[str, ...]
    outliers: tuple[str, ...]
    verified: bool = True


@dataclass(frozen=True)
class Duplicate:
    """Updates of different tasks with the same bytes: one of ``peers`` copied.

    Which one cannot be told from the hash (the copy may be announced first), so
    every one of them is compared with the owner's re-run of its own task.
    """

    peers: tuple[str, ...]


@dataclass(frozen=True)
class _PeerEvent:
    """An event about one peer; each subclass is its own kind of event."""

    peer: str


class Refused(_PeerEvent):
    """``peer`` gave up its task (bad data, busy, over budget...): no charge."""


class Gone(_PeerEvent):
    """``peer`` vanished: unreachable, or its presence timed out."""


class SpareJoined(_PeerEvent):
    """A new trainer offered while the round runs; it may fill an orphaned slot."""


RoundEvent = Announced | Checked | Compared | Duplicate | Refused | Gone | SpareJoined
