"""What the job protocol needs from the daemon: its node and its job store.

Declared here so the job protocol depends on interfaces, not on the process that
hosts it (``p2pnode`` implements both); tests can hand in any object with these
members.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from libp2p.crypto.keys import PrivateKey
from libp2p.peer.id import ID

TopicHandler = Callable[[bytes, ID], Awaitable[None]]
RequestHandler = Callable[[bytes, ID], Awaitable[bytes]]


class NodeLike(Protocol):
    """The daemon services a job behaviour uses."""

    @property
    def peer_id(self) -> ID:
        """This daemon's peer id."""

    @property
    def private_key(self) -> PrivateKey:
        """This daemon's libp2p identity key (signs and opens sealed payloads)."""

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on gossipsub ``topic``."""

    def subscribe(self, topic: str, handler: TopicHandler) -> None:
        """Deliver every message on ``topic`` to ``handler(data, from_peer)``."""

    async def unsubscribe(self, topic: str) -> None:
        """Stop delivering ``topic``."""

    def set_stream_handler(self, protocol_id: str, handler: RequestHandler) -> None:
        """Answer one-request/one-response streams of ``protocol_id`` with ``handler``."""

    async def request(
        self,
        peer_id: ID,
        protocol_id: str,
        data: bytes,
        timeout: float | None = None,  # noqa: ASYNC109 - the daemon's own deadline parameter
    ) -> bytes:
        """Send one request to ``peer`` and return its response (raises on timeout)."""

    def live_peers(self) -> Sequence[str]:
        """Base58 ids of peers heard from recently (presence not timed out)."""

    def last_heard(self, peer: str) -> float | None:
        """``time.monotonic()`` of ``peer``'s last presence; None when not live."""

    def health(self) -> dict[str, Any]:
        """This daemon's own current status: health, accepting, cpu_count, free slots."""


@dataclass(frozen=True)
class JobRow:
    """One job as stored."""

    job_id: str
    spec_json: str
    state: str
    created_ms: int
    finished_ms: int | None
    completed_round: int
    model_key: str | None
    model_sha256: str | None
    error: str | None


@dataclass(frozen=True)
class ChunkRow:
    """One stored chunk of a job's data, assigned to a slot.

    ``sha256`` and ``size`` describe the plaintext (its content identity); an
    encrypted chunk's stored ciphertext has ``cipher_sha256`` and ``cipher_size``,
    which are empty (``""``, 0) for a chunk stored in the clear.
    """

    slot: int
    idx: int
    key: str
    sha256: str
    size: int
    samples: int
    cipher_sha256: str = ""
    cipher_size: int = 0


@dataclass(frozen=True)
class RoundRecord:
    """A completed round, as the owner records it in one transaction."""

    round: int
    seconds: float
    test_accuracy: float
    test_loss: float
    model_key: str
    model_sha256: str
    updates: Sequence[tuple[str, str, int, int, str, str]]
    reason: str
    server_state: bytes | None
    detail: dict[str, Any]


class JobStoreLike(Protocol):
    """The owner's durable state (implemented by ``p2pnode.jobstore.JobStore``)."""

    def create_job(self, job_id: str, spec_json: str) -> None:
        """Record a newly submitted job in state ``preparing``."""

    def set_prepared(
        self, job_id: str, chunks: Iterable[ChunkRow], model_key: str, model_sha256: str
    ) -> None:
        """Record the uploaded chunks and the initial model; the job becomes ``running``."""

    def record_round(self, job_id: str, record: RoundRecord) -> None:
        """Record a completed round and advance the job to it, atomically."""

    def finish(self, job_id: str, state: str, error: str | None = None) -> None:
        """Mark a job ``done``, ``failed`` or ``cancelled``."""

    def job(self, job_id: str) -> JobRow | None:
        """The job, or None when unknown."""

    def jobs(self) -> list[JobRow]:
        """Every job, newest first."""

    def chunks(self, job_id: str) -> list[ChunkRow]:
        """The job's chunks in slot, index order."""

    def rounds(self, job_id: str) -> list[dict[str, Any]]:
        """One record per completed round, in order."""

    def job_key(self, job_id: str) -> bytes | None:
        """The job's encryption key (32 bytes), or None for a job stored in the clear."""

    def set_job_key(self, job_id: str, key: bytes) -> None:
        """Keep the job's encryption key, durably, before anything is encrypted with it."""

    def server_state(self, job_id: str) -> bytes | None:
        """The aggregation rule's saved server state, if any."""

    def reputation(self) -> dict[str, tuple[float, int]]:
        """Every peer's stored (score, updated_ms)."""

    def set_reputation(self, peer: str, score: float, updated_ms: int) -> None:
        """Store one peer's score."""

    def contributions(self) -> dict[str, int]:
        """Every peer's count of accepted and verified contributions."""

    def add_contribution(self, peer: str) -> None:
        """Count one more accepted and verified contribution of ``peer``."""

    def speeds(self, job_id: str) -> dict[str, tuple[float, float, int]]:
        """Each peer's measured (samples per second, bytes per second, tasks) in a job."""

    def set_speed(
        self, job_id: str, peer: str, samples_per_s: float, bytes_per_s: float, tasks: int
    ) -> None:
        """Store one peer's measured speed in a job (docs/jobs.md, "Sized shares")."""
