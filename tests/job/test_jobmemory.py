"""The trainer's per-job memory (protocols/job/jobmemory.py): bounded, tagged, dropped."""

from __future__ import annotations

from protocols.job.jobmemory import BASE, RESIDUAL, JobMemory


def test_entries_answer_by_job_and_tag() -> None:
    m = JobMemory(max_bytes=100)
    m.put("j", BASE, b"model", tag="sha-a")
    m.put("j", RESIDUAL, b"res")
    assert m.get("j", BASE, "sha-a") == b"model"
    assert m.get("j", BASE, "sha-b") is None  # a delta for another base finds nothing
    assert m.get("j", RESIDUAL) == b"res"
    assert m.get("other", RESIDUAL) is None
    m.put("j", RESIDUAL, b"newer")
    assert m.get("j", RESIDUAL) == b"newer" and m.size == len(b"model") + len(b"newer")


def test_bounded_in_bytes_and_jobs_least_recently_used_first() -> None:
    m = JobMemory(max_bytes=10, max_jobs=2)
    m.put("a", RESIDUAL, b"12345")
    m.put("b", RESIDUAL, b"12345")
    assert m.get("a", RESIDUAL) == b"12345"  # a is now the most recent
    m.put("c", RESIDUAL, b"123")
    assert "b" not in m and "a" in m and "c" in m
    assert m.size <= 10
    m.put("d", RESIDUAL, b"x" * 11)  # larger than the whole budget: not kept
    assert "d" not in m and m.size <= 10


def test_drop_forgets_a_job() -> None:
    m = JobMemory(max_bytes=100)
    m.put("j", BASE, b"model", tag="t")
    m.put("j", RESIDUAL, b"res")
    m.drop("j")
    assert "j" not in m and m.size == 0
    m.drop("never-seen")  # harmless
