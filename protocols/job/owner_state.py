"""The owner's per-job state and settings, shared by ``owner`` and ``owner_rounds``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio
from libp2p.crypto.keys import PublicKey

from p2pnode.jobstore import ChunkRow
from protocols.job import compute
from protocols.job import rounds as rd
from protocols.job.selection import OfferInfo, ReputationConfig
from protocols.job.spec import JobSpec


@dataclass(frozen=True)
class OwnerConfig:
    """Timeouts and limits of the owner role.

    Attributes:
        announce_interval_s: Re-announce a recruiting job this often.
        recruit_timeout_s: Give up a job that finds no trainer in this time.
        recruit_patience_s: Start with fewer trainers than wanted once no new offer
            came for this long.
        request_timeout_s: Wait for a trainer's answer to an assignment (a busy
            machine importing torch for its first task can take many seconds).
        tick_s: Round clock resolution (deadlines, liveness checks).
        max_update_bytes: Largest update fetched.
        round_attempts: Tries per round before the job fails.
        backup_fraction: Part of the round deadline after which stragglers get backups.
        events: Bound of each round's event queue.
        url_expiry_s: Lifetime of presigned URLs handed out per round.
    """

    announce_interval_s: float = 2.0
    recruit_timeout_s: float = 120.0
    recruit_patience_s: float = 20.0
    request_timeout_s: float = 30.0
    tick_s: float = 0.2
    max_update_bytes: int = 64 * 1024 * 1024
    round_attempts: int = 3
    backup_fraction: float = 0.6
    events: int = 1024
    url_expiry_s: int = 3600
    reputation: ReputationConfig = field(default_factory=ReputationConfig)


@dataclass
class LiveJob:
    """A running job as the owner sees it (in memory; the job store has the rest)."""

    job_id: str
    spec: JobSpec
    phase: str = "preparing"
    round_no: int = 0
    offers: dict[str, OfferInfo] = field(default_factory=dict)
    keys: dict[str, PublicKey] = field(default_factory=dict)
    pool: list[str] = field(default_factory=list)
    trainers: dict[str, str] = field(default_factory=dict)
    issued: dict[tuple[str, int], str] = field(default_factory=dict)
    rnd: rd.Round | None = None
    events: trio.MemorySendChannel[tuple[Any, ...]] | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    seen_alive: set[str] = field(default_factory=set)
    dropped: dict[str, int] = field(default_factory=dict)
    error: str = ""
    prepared: compute.Prepared | None = None
    model: bytes = b""


@dataclass
class Got:
    """An accepted update, held until the round closes."""

    peer: str
    slot: int
    sha256: str
    samples: int
    data: bytes
    train_seconds: float = 0.0


@dataclass
class RoundCtx:
    """What the tasks of one round share."""

    live: LiveJob
    round: int
    slots: dict[int, list[ChunkRow]]
    model_url: str
    model_sha: str
    model_size: int
    got: dict[str, Got]
    announced: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)
