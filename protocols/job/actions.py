"""What the round machine asks of the owner's network code: the round's outbound actions.

:class:`protocols.job.rounds.Round` returns these, in order, from every method; the
owner's round runner carries them out. The inbound half of the vocabulary, the
events fed to the machine, is in :mod:`protocols.job.records`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SendTask:
    """Assign ``slot``'s work for this round to ``peer``."""

    peer: str
    slot: int
    backup: bool = False
    replica: bool = False


@dataclass(frozen=True)
class CheckUpdate:
    """Fetch and validate ``peer``'s announced update for ``slot``."""

    peer: str
    slot: int
    sha256: str


@dataclass(frozen=True)
class Compare:
    """Compare the checked updates of ``peers`` for ``slot`` (same task, same data).

    ``owner``: the owner re-runs the task itself and judges every peer against its
    own result; otherwise the peers are judged against each other. Answer with a
    ``records.Compared`` event.
    """

    slot: int
    peers: tuple[str, ...]
    owner: bool


@dataclass(frozen=True)
class Charge:
    """A final reputation outcome witnessed for ``peer``: rejected, vanished, late, cheated."""

    peer: str
    outcome: str


@dataclass(frozen=True)
class Accepted:
    """An update that passed its checks and will go to aggregation.

    ``late``: it came after the round's backup time (charged ``late``, not
    ``accepted``, if the aggregation keeps it). ``verified``: a comparison
    reproduced it. ``share``: the part of the slot's samples it stands for.
    """

    peer: str
    slot: int
    sha256: str
    late: bool = False
    verified: bool = False
    share: float = 1.0


@dataclass(frozen=True)
class Close:
    """The round is over: aggregate ``accepted``. ``reason``: complete, quorum, deadline.

    ``cheaters``: peers a comparison caught in this round.
    """

    accepted: tuple[Accepted, ...]
    rejected: tuple[str, ...]
    reason: str
    cheaters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fail:
    """The round cannot reach ``min_updates``; ``reason``: deadline or no_trainers."""

    reason: str


Action = SendTask | CheckUpdate | Compare | Charge | Close | Fail
