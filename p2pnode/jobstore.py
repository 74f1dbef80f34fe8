"""Durable job state: one SQLite database per daemon (``D/jobs.sqlite3``).

Every change that belongs together is one transaction, so a crash at any point
leaves either the state before or the state after it: a round is recorded with its
model, updates and metrics at once, and a job's current round only moves forward
in the same transaction. WAL mode keeps a write to a few hundred microseconds, which
is why these calls run on the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from protocols.job.ports import ChunkRow, JobRow, RoundRecord

__all__ = ["ChunkRow", "JobRow", "JobStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
  spec_json TEXT NOT NULL,
  state TEXT NOT NULL,             -- preparing, running, done, failed, cancelled
  created_ms INTEGER NOT NULL,
  finished_ms INTEGER,
  completed_round INTEGER NOT NULL DEFAULT 0,
  model_key TEXT,                  -- current global model object key
  model_sha256 TEXT,
  error TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
  job_id TEXT NOT NULL, slot INTEGER NOT NULL, idx INTEGER NOT NULL,
  key TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, samples INTEGER NOT NULL,
  cipher_sha256 TEXT NOT NULL DEFAULT '', cipher_size INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (job_id, slot, idx)
);
CREATE TABLE IF NOT EXISTS job_keys (  -- the owner's encryption key of each job
  job_id TEXT PRIMARY KEY, key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
  job_id TEXT NOT NULL, round INTEGER NOT NULL,
  seconds REAL NOT NULL,           -- since the job was submitted
  test_accuracy REAL, test_loss REAL,
  model_key TEXT NOT NULL, model_sha256 TEXT NOT NULL,
  accepted INTEGER NOT NULL, rejected INTEGER NOT NULL, reason TEXT NOT NULL,
  detail_json TEXT NOT NULL,
  PRIMARY KEY (job_id, round)
);
CREATE TABLE IF NOT EXISTS updates (
  job_id TEXT NOT NULL, round INTEGER NOT NULL, sha256 TEXT NOT NULL,
  peer TEXT NOT NULL, slot INTEGER NOT NULL, samples INTEGER NOT NULL,
  verdict TEXT NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY (job_id, round, sha256, peer)
);
CREATE TABLE IF NOT EXISTS server_state (
  job_id TEXT PRIMARY KEY, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS reputation (
  peer TEXT PRIMARY KEY, score REAL NOT NULL, updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS contributions (  -- accepted and verified updates per peer
  peer TEXT PRIMARY KEY, verified INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS speeds (  -- measured per finished task (sized shares)
  job_id TEXT NOT NULL, peer TEXT NOT NULL, samples_per_s REAL NOT NULL,
  bytes_per_s REAL NOT NULL, tasks INTEGER NOT NULL, PRIMARY KEY (job_id, peer)
);
"""


class JobStore:
    """The daemon's job database. Not thread-safe: use it from the event loop only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._migrate()
        path.chmod(0o600)

    def _migrate(self) -> None:
        """Add the columns a database made by an older version lacks."""
        have = {r[1] for r in self._db.execute("PRAGMA table_info(chunks)")}
        for column, decl in (
            ("cipher_sha256", "TEXT NOT NULL DEFAULT ''"),
            ("cipher_size", "INTEGER NOT NULL DEFAULT 0"),
        ):
            if column not in have:
                self._db.execute(f"ALTER TABLE chunks ADD COLUMN {column} {decl}")

    def close(self) -> None:
        """Close the database (idempotent)."""
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def create_job(self, job_id: str, spec_json: str) -> None:
        """Record a newly submitted job in state ``preparing``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO jobs (job_id, spec_json, state, created_ms) VALUES (?, ?, ?, ?)",
                (job_id, spec_json, "preparing", int(time.time() * 1000)),
            )

    def set_prepared(
        self, job_id: str, chunks: Iterable[ChunkRow], model_key: str, model_sha256: str
    ) -> None:
        """Record the uploaded chunks and the initial model; the job becomes ``running``.

        Only a job still ``preparing`` does: one cancelled while its data was uploading
        (the upload's thread finishes before the cancel lands) stays cancelled.
        """
        with self._tx() as db:
            db.execute("DELETE FROM chunks WHERE job_id = ?", (job_id,))
            db.executemany(
                "INSERT INTO chunks (job_id, slot, idx, key, sha256, size, samples, "
                "cipher_sha256, cipher_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (job_id, c.slot, c.idx, c.key, c.sha256, c.size, c.samples)
                    + (c.cipher_sha256, c.cipher_size)
                    for c in chunks
                ],
            )
            db.execute(
                "UPDATE jobs SET state = 'running', model_key = ?, model_sha256 = ? "
                "WHERE job_id = ? AND state = 'preparing'",
                (model_key, model_sha256, job_id),
            )

    def record_round(self, job_id: str, record: RoundRecord) -> None:
        """Record a completed round and advance the job to it, atomically.

        ``record.updates`` rows are (sha256, peer, slot, samples, verdict, reason).
        """
        r = record
        rows = list(r.updates)
        accepted = sum(1 for row in rows if row[4] == "accepted")
        rejected = sum(1 for row in rows if row[4] == "rejected")
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO updates VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(job_id, r.round, *row) for row in rows],
            )
            db.execute(
                "INSERT OR REPLACE INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id, r.round, r.seconds, r.test_accuracy, r.test_loss, r.model_key,
                    r.model_sha256, accepted, rejected, r.reason,
                    json.dumps(r.detail),
                ),
            )
            if r.server_state is not None:
                db.execute(
                    "INSERT OR REPLACE INTO server_state VALUES (?, ?)", (job_id, r.server_state)
                )
            db.execute(
                "UPDATE jobs SET completed_round = ?, model_key = ?, model_sha256 = ? "
                "WHERE job_id = ? AND completed_round < ?",
                (r.round, r.model_key, r.model_sha256, job_id, r.round),
            )

    def finish(self, job_id: str, state: str, error: str | None = None) -> None:
        """Mark a job ``done``, ``failed`` or ``cancelled``; a job already ended keeps its end."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished_ms = ? "
                "WHERE job_id = ? AND state IN ('preparing', 'running')",
                (state, error, int(time.time() * 1000), job_id),
            )

    def job(self, job_id: str) -> JobRow | None:
        """The job, or None when unknown."""
        row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else JobRow(*row)

    def jobs(self) -> list[JobRow]:
        """Every job, newest first."""
        rows = self._db.execute("SELECT * FROM jobs ORDER BY created_ms DESC").fetchall()
        return [JobRow(*r) for r in rows]

    def chunks(self, job_id: str) -> list[ChunkRow]:
        """The job's chunks in slot, index order."""
        rows = self._db.execute(
            "SELECT slot, idx, key, sha256, size, samples, cipher_sha256, cipher_size "
            "FROM chunks WHERE job_id = ? "
            "ORDER BY slot, idx",
            (job_id,),
        ).fetchall()
        return [ChunkRow(*r) for r in rows]

    def job_key(self, job_id: str) -> bytes | None:
        """The job's encryption key, or None for a job stored in the clear."""
        row = self._db.execute("SELECT key FROM job_keys WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def set_job_key(self, job_id: str, key: bytes) -> None:
        """Keep the job's encryption key (the file is readable by the daemon's user only)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO job_keys VALUES (?, ?)", (job_id, key))

    def rounds(self, job_id: str) -> list[dict[str, Any]]:
        """One record per completed round, in order.

        ``updates`` lists every update the round judged: ``peer``, ``slot``,
        ``sha256``, ``samples``, ``verdict`` and ``reason`` (each trainer's part).
        """
        cur = self._db.execute(
            "SELECT round, seconds, test_accuracy, test_loss, model_sha256, accepted, rejected, "
            "reason, detail_json FROM rounds WHERE job_id = ? ORDER BY round",
            (job_id,),
        )
        out = []
        for r in cur.fetchall():
            rec = dict(zip([d[0] for d in cur.description], r, strict=True))
            rec.update(json.loads(rec.pop("detail_json")))
            rec["updates"] = []
            out.append(rec)
        by_round = {rec["round"]: rec for rec in out}
        rows = self._db.execute(
            "SELECT round, peer, slot, sha256, samples, verdict, reason FROM updates "
            "WHERE job_id = ? ORDER BY round, slot, peer",
            (job_id,),
        ).fetchall()
        for rnd, peer, slot, sha, samples, verdict, reason in rows:
            if rnd in by_round:
                by_round[rnd]["updates"].append({"peer": peer, "slot": slot, "sha256": sha,
                                                 "samples": samples, "verdict": verdict,
                                                 "reason": reason})
        return out

    def server_state(self, job_id: str) -> bytes | None:
        """The aggregation rule's saved server state (FedOpt moments), if any."""
        row = self._db.execute(
            "SELECT data FROM server_state WHERE job_id = ?", (job_id,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def reputation(self) -> dict[str, tuple[float, int]]:
        """Every peer's stored (score, updated_ms)."""
        rows = self._db.execute("SELECT peer, score, updated_ms FROM reputation").fetchall()
        return {p: (s, t) for p, s, t in rows}

    def contributions(self) -> dict[str, int]:
        """Every peer's count of accepted and verified contributions (quarantine)."""
        rows = self._db.execute("SELECT peer, verified FROM contributions").fetchall()
        return {p: int(n) for p, n in rows}

    def add_contribution(self, peer: str) -> None:
        """Count one more accepted and verified contribution of ``peer``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO contributions VALUES (?, 1) "
                "ON CONFLICT(peer) DO UPDATE SET verified = verified + 1",
                (peer,),
            )

    def speeds(self, job_id: str) -> dict[str, tuple[float, float, int]]:
        """Each peer's measured (samples per second, bytes per second, tasks) in a job."""
        rows = self._db.execute(
            "SELECT peer, samples_per_s, bytes_per_s, tasks FROM speeds WHERE job_id = ?",
            (job_id,),
        ).fetchall()
        return {p: (float(s), float(b), int(n)) for p, s, b, n in rows}

    def set_speed(
        self, job_id: str, peer: str, samples_per_s: float, bytes_per_s: float, tasks: int
    ) -> None:
        """Store one peer's measured speed in a job."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO speeds VALUES (?, ?, ?, ?, ?)",
                (job_id, peer, samples_per_s, bytes_per_s, tasks),
            )

    def set_reputation(self, peer: str, score: float, updated_ms: int) -> None:
        """Store one peer's score."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO reputation VALUES (?, ?, ?)", (peer, score, updated_ms)
            )
