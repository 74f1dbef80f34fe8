"""The SQLite job store: round trips and all-or-nothing round records."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from p2pnode.jobstore import ChunkRow, JobStore
from protocols.job.ports import RoundRecord


def test_job_life_round_trip_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite3"
    store = JobStore(db)
    store.create_job("j1", '{"rounds": 2}')
    store.set_prepared("j1", [ChunkRow(0, 0, "k0", "s0", 10, 5)], "m0", "h0")
    store.record_round(
        "j1",
        RoundRecord(
            round=1,
            seconds=1.5,
            test_accuracy=0.9,
            test_loss=0.3,
            model_key="m1",
            model_sha256="h1",
            updates=[("u1", "peerA", 0, 5, "accepted", "")],
            reason="complete",
            server_state=b"\x01",
            detail={"rejected_updates": []},
        ),
    )
    store.close()
    again = JobStore(db)
    job = again.job("j1")
    assert job is not None and job.state == "running" and job.completed_round == 1
    assert job.model_sha256 == "h1"
    assert again.chunks("j1") == [ChunkRow(0, 0, "k0", "s0", 10, 5)]
    (rec,) = again.rounds("j1")
    assert rec["round"] == 1 and rec["test_accuracy"] == 0.9 and rec["accepted"] == 1
    assert rec["updates"] == [{"peer": "peerA", "slot": 0, "sha256": "u1", "samples": 5,
                               "verdict": "accepted", "reason": ""}]
    assert again.server_state("j1") == b"\x01"
    assert (db.stat().st_mode & 0o777) == 0o600


def test_a_failed_round_record_changes_nothing(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create_job("j1", "{}")
    with pytest.raises(sqlite3.ProgrammingError):
        store.record_round(
            "j1",
            RoundRecord(
                round=1,
                seconds=1.0,
                test_accuracy=0.5,
                test_loss=1.0,
                model_key="m1",
                model_sha256="h1",
                updates=[("u1", "p", 0, 1, "accepted", "", "extra")],  # type: ignore[list-item]
                reason="complete",
                server_state=None,
                detail={},
            ),
        )
    job = store.job("j1")
    assert job is not None and job.completed_round == 0 and store.rounds("j1") == []


def test_verified_contributions_survive_a_restart(tmp_path: Path) -> None:
    """Quarantine counts are durable: a restarted owner does not quarantine known peers."""
    from protocols.job.owner import Owner

    db = tmp_path / "jobs.sqlite3"
    store = JobStore(db)
    for peer in ("a", "a", "b"):
        store.add_contribution(peer)
    store.close()
    again = JobStore(db)
    assert again.contributions() == {"a": 2, "b": 1}
    owner = Owner(node=None, jobs=again, open_store=lambda: None)  # type: ignore[arg-type]
    assert owner.rounds.env.verified == {"a": 2, "b": 1}


def test_a_job_cancelled_while_preparing_stays_cancelled_and_an_end_is_final(
        tmp_path: Path) -> None:
    """The owner's upload runs in a thread that finishes after a cancel: its
    set_prepared must not bring the job back to running (where a restart resumes it)."""
    store = JobStore(tmp_path / "jobs.sqlite3")
    store.create_job("j1", "{}")
    store.finish("j1", "cancelled")
    store.set_prepared("j1", [ChunkRow(0, 0, "k0", "s0", 10, 5)], "m0", "h0")
    job = store.job("j1")
    assert job is not None and job.state == "cancelled"
    store.finish("j1", "failed", "late error")
    job = store.job("j1")
    assert job is not None and job.state == "cancelled" and job.error is None
    store.create_job("j2", "{}")
    store.set_prepared("j2", [], "m0", "h0")
    store.finish("j2", "done")
    job = store.job("j2")
    assert job is not None and job.state == "done"
