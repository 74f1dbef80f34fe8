"""The trainer's per-job memory (protocols/job/jobmemory.py): bounded, tagged, dropped;
and a daemon's heap, frozen after warm-up and collected per task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from protocols.job.jobmemory import BASE, RESIDUAL, JobMemory

REPO = Path(__file__).resolve().parents[2]


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


def test_a_daemon_freezes_its_warm_heap_and_collects_each_task_in_its_own_process() -> None:
    """Without freeze_after_warm_up (a test run, a library) warm_up leaves the collector
    alone and return_free_memory collects nothing; with it (run_node), the heap is frozen
    once after the torch import and each task's cyclic garbage goes before the next."""
    code = """
import gc, weakref
from protocols.job import compute, jobmemory
gc.disable()  # only the calls under test collect
class Node:
    pass
def cycle():
    a, b = Node(), Node()
    a.b, b.a = b, a
    return weakref.ref(a)
compute.warm_up("cpu")
first = gc.get_freeze_count()
ref = cycle()
jobmemory.return_free_memory()
kept = ref() is not None
jobmemory.freeze_after_warm_up()
compute.warm_up("cpu")
ref = cycle()
jobmemory.return_free_memory()
print(first, kept, gc.get_freeze_count() > 10000, ref() is None)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.split() == ["0", "True", "True", "True"]
