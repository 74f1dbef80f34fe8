"""The owner's settings (the ``[owner]`` table) and its in-memory view of a job."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from libp2p.crypto.keys import PublicKey

from protocols.job import rounds
from protocols.job.http import LazyClient
from protocols.job.objects import JobKey
from protocols.job.ports import ChunkRow, JobStoreLike, NodeLike
from protocols.job.records import Phase, TrainerState
from protocols.job.selection import OfferInfo, ReputationConfig
from protocols.job.spec import JobSpec
from protocols.job.verification import DEFAULT_TOLERANCE

if TYPE_CHECKING:
    from protocols.job.owner.reputation import Reputation
    from protocols.market.settle import Settlement


@dataclass(frozen=True)
class OwnerConfig:
    """Timeouts and limits of the owner role. Defaults are documented in docs/jobs.md.

    Attributes:
        announce_interval_s: Re-announce a recruiting job this often (five times
            less often once it runs).
        announce_ttl_s: How long an announcement stays valid for offers.
        recruit_timeout_s: Give up a job that finds no trainer in this time.
        recruit_patience_s: Start with fewer trainers than wanted once no new offer
            came for this long.
        request_timeout_s: Wait for a trainer's answer to an assignment (a busy
            machine importing torch for its first task can take many seconds).
        tick_s: Round clock resolution (deadlines, liveness checks).
        unsubscribe_timeout_s: Longest wait to leave a finished job's topic.
        max_update_bytes: Largest update fetched.
        round_attempts: Tries per round before the job fails.
        backup_fraction: Part of the round deadline after which stragglers get backups.
        events: Bound of each round's queue of trainers' announcements (further
            ones are dropped as ``queue_full``; the owner's own events never are).
        url_grace_s: Presigned URLs of a round expire this long after its deadline.
        max_offers: Offers remembered per job (further offers are refused as ``full``).
        max_spares: Spares kept per job beside the trainers wanted.
        encrypt: Store a new job's chunks and models encrypted, and ask trainers
            for encrypted updates (docs/storage.md); false stores them in the
            clear, for public data. A job keeps the choice it was prepared with.
        spot_check_rate: Chance that the owner re-runs a (non-redundant) task itself
            and compares (docs/verification.md).
        replica_tolerance: Largest relative L2 distance of two updates of the same
            task taken as the same work.
        quarantine_contributions: Accepted and verified contributions a peer needs
            before its unverified updates get full weight.
        quarantine_weight: FedAvg weight factor of a quarantined peer's unverified
            update (0: validated and recorded, but left out of the average).
        probation_checks: Tasks of quarantined peers the owner re-runs per round
            (their way out of quarantine).
        rerun_charge_above: An update compared with the owner's own re-run is
            charged ``cheated`` only above this distance; between
            ``replica_tolerance`` and this it is accepted unverified, uncharged (a
            trainer on a GPU computes differently from the owner's CPU re-run).
        receipt_attempts: Tries to hand a trainer its round's payment receipts
            (all within one ``request_timeout_s``).
        receipt_retry_s: Pause before the next try, times the try's number.
        ledger_end_timeout_s: Longest wait to end a cancelled or failed paid job on
            the ledger (what starts its refund's grace period).
        shares_min: Smallest sized share of a trainer that takes part, as a
            fraction of the equal share; a trainer whose smallest share would end
            the round later than the others need without it gets none that round
            (docs/jobs.md, "Sized shares").
        shares_max: Largest sized share, as a multiple of the equal share.
        shares_min_gain: Move chunks only when that cuts the predicted round time
            by this fraction ...
        shares_min_gain_s: ... and by at least these seconds.
        shares_min_tasks: Finished tasks of a peer before its own figures size it
            (1: round 1's tasks size round 2).
        shares_sit_out_tasks: A peer sits a round out only if each of its last
            this many finished tasks says it is too slow for any share (its first
            may include a cold start, any may be a bad moment).
        shares_reprobe_rounds: A peer that sat out this many rounds in a row gets a
            share again (at least ``shares_min``), so its speed is measured anew.
    """

    announce_interval_s: float = 2.0
    announce_ttl_s: float = 60.0
    recruit_timeout_s: float = 120.0
    recruit_patience_s: float = 20.0
    request_timeout_s: float = 30.0
    tick_s: float = 0.2
    unsubscribe_timeout_s: float = 2.0
    max_update_bytes: int = 64 * 1024 * 1024
    round_attempts: int = 3
    backup_fraction: float = 0.6
    events: int = 1024
    url_grace_s: float = 60.0
    max_offers: int = 1024
    max_spares: int = 64
    encrypt: bool = True
    spot_check_rate: float = 0.05
    replica_tolerance: float = DEFAULT_TOLERANCE
    quarantine_contributions: int = 1
    quarantine_weight: float = 0.0
    probation_checks: int = 8
    rerun_charge_above: float = 0.2
    receipt_attempts: int = 3
    receipt_retry_s: float = 1.0
    ledger_end_timeout_s: float = 60.0
    shares_min: float = 0.25
    shares_max: float = 2.0
    shares_min_gain: float = 0.2
    shares_min_gain_s: float = 1.0
    shares_min_tasks: int = 1
    shares_sit_out_tasks: int = 2
    shares_reprobe_rounds: int = 10
    reputation: ReputationConfig = field(default_factory=ReputationConfig)


@dataclass
class OwnerStats:
    """Totals since the daemon started, for metrics (read from other threads).

    Attributes:
        dropped: Messages dropped, by reason code.
        updates: Updates by (verdict, reason): checked, rejected, outvoted, aggregated.
        rounds_completed: Rounds closed and recorded.
        bytes_in: Update bytes fetched.
    """

    dropped: Counter[str] = field(default_factory=Counter)
    updates: Counter[tuple[str, str]] = field(default_factory=Counter)
    rounds_completed: int = 0
    bytes_in: int = 0


@dataclass
class LiveJob:
    """A running job as the owner sees it (in memory; the job store has the rest)."""

    job_id: str
    spec: JobSpec
    phase: Phase = Phase.PREPARING
    round_no: int = 0
    offers: dict[str, OfferInfo] = field(default_factory=dict)
    keys: dict[str, PublicKey] = field(default_factory=dict)
    pool: list[str] = field(default_factory=list)
    trainers: dict[str, TrainerState] = field(default_factory=dict)
    rnd: rounds.Round | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    seen_alive: set[str] = field(default_factory=set)
    # peer -> time.monotonic() its assignment failed (round.forgive_heard)
    assign_failed: dict[str, float] = field(default_factory=dict)
    past_updates: set[str] = field(default_factory=set)
    job_key: JobKey | None = None
    dropped: Counter[str] = field(default_factory=Counter)
    error: str = ""
    cheaters: dict[str, str] = field(default_factory=dict)  # peer -> how it was caught
    quarantine: dict[str, str] = field(default_factory=dict)  # peer -> why
    holders: dict[int, str] = field(default_factory=dict)  # last round's slot -> peer
    # this round's chunks of every slot (sized shares, owner/speeds.py), and why
    layout: dict[int, tuple[ChunkRow, ...]] = field(default_factory=dict)
    shares: dict[str, Any] = field(default_factory=dict)


@dataclass
class OwnerEnv:
    """What the owner's parts share: the daemon, the store, settings and the books.

    Attributes:
        node: The daemon (``NodeLike``).
        jobs: The job store (``JobStoreLike``).
        cfg: The ``[owner]`` settings.
        reputation: The reputation book.
        stats: Totals for metrics.
        http: The owner's HTTP client for fetching updates.
        get_store: Returns the object store, opened on first use.
        prefix: The object-key prefix of a job id.
        secret: This owner's secret behind every task nonce (docs/verification.md).
        verified: Accepted and verified contributions of each peer, kept in the job
            store (``contributions``) so a restarted owner does not quarantine
            peers it has already verified.
    """

    node: NodeLike
    jobs: JobStoreLike
    cfg: OwnerConfig
    reputation: Reputation
    stats: OwnerStats
    http: LazyClient
    get_store: Callable[[], Awaitable[Any]]
    prefix: Callable[[str], str]
    market: Settlement | None = None  # the ledger (docs/ledger.md); None: unpaid jobs only
    secret: bytes = field(default_factory=lambda: os.urandom(32))  # seeds task nonces
    verified: Counter[str] = field(default_factory=Counter)  # verified contributions
