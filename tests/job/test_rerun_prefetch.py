"""The owner's re-runs start early and are taken once (protocols/job/owner/verify.py).

Pure unit tests: ``assess.rerun`` is replaced by a counter, so what is checked is the
bookkeeping: a re-run started ahead of its update is the one ``compare`` uses, a task
with another chunk list or model is re-run anew, a failed early re-run is retried, and
probation draws first from the holders whose re-runs are ready, and a cancelled
re-run neither holds up its job's end nor keeps training.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pnode.jobstore import JobStore
from protocols.job import assess
from protocols.job.owner import OwnerConfig
from protocols.job.owner.config import LiveJob, OwnerEnv, OwnerStats
from protocols.job.owner.prepare import JobData
from protocols.job.owner.reputation import Reputation
from protocols.job.owner.verify import Verifier
from protocols.job.spec import from_mapping
from tests.job.test_job_inprocess import SMALL

SLOTS = 4


class FakeRerun:
    """Stands in for ``assess.rerun``: counts calls per (slot, model), fails on demand."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[int, bytes]] = Counter()
        self.fail_next = False

    def __call__(
        self, prepared: Any, spec: Any, model: bytes, slot: int, nonce: bytes,
        should_stop: Any = None,
    ) -> bytes:
        self.calls[(slot, model)] += 1
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("early re-run broke")
        return b"weights-%d-" % slot + model


def verifier(tmp_path: Path, **cfg: Any) -> Verifier:
    config = OwnerConfig(**cfg)

    async def no_store() -> None:
        return None

    jobs = JobStore(tmp_path / "jobs.sqlite3")
    env = OwnerEnv(
        node=None,  # type: ignore[arg-type]  # not used by the verifier
        jobs=jobs,
        cfg=config,
        reputation=Reputation(jobs, config.reputation),
        stats=OwnerStats(),
        http=None,  # type: ignore[arg-type]
        get_store=no_store,
        prefix=lambda job: job,
    )
    return Verifier(env)


class Prepared:
    slots = [[(b"chunk", 1)] * 3 for _ in range(SLOTS)]


def data(model: bytes = b"m0") -> JobData:
    return JobData(Prepared(), {}, model, "", model.hex())  # type: ignore[arg-type]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRerun:
    f = FakeRerun()
    monkeypatch.setattr(assess, "rerun", f)
    return f


async def test_an_early_rerun_is_the_one_compare_takes(tmp_path: Path, fake: FakeRerun) -> None:
    v = verifier(tmp_path)
    live = LiveJob("job1", from_mapping(SMALL))
    home = tuple((1, i) for i in range(3))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(v.prefetch, live, data(), 1, [1, 2])
        await trio.testing.wait_all_tasks_blocked()
        assert v.ready(live, 1) == {1, 2}
        got = await v._rerun(live, data(), 1, 1, home)  # compare's path, while it runs
    assert got == b"weights-1-m0"
    assert fake.calls == Counter({(1, b"m0"): 1, (2, b"m0"): 1})
    # Another chunk list (sized shares) or another model is another task.
    await v._rerun(live, data(), 1, 1, ((1, 0), (1, 1)))
    await v._rerun(live, data(b"m1"), 1, 1, home)
    assert fake.calls[(1, b"m0")] == 2 and fake.calls[(1, b"m1")] == 1
    # Round 2's first re-run drops round 1's; the job's end drops the rest.
    await v._rerun(live, data(), 2, 3, tuple((3, i) for i in range(3)))
    assert v.ready(live, 1) == set() and v.ready(live, 2) == {3}
    v.forget("job1")
    assert v.reruns == {}


async def test_a_failed_early_rerun_is_done_again_by_compare(
    tmp_path: Path, fake: FakeRerun
) -> None:
    v = verifier(tmp_path)
    live = LiveJob("job1", from_mapping(SMALL))
    fake.fail_next = True
    await v.prefetch(live, data(), 1, [0])  # logs the failure, does not raise
    assert v.ready(live, 1) == set()
    assert await v._rerun(live, data(), 1, 0, tuple((0, i) for i in range(3))) == b"weights-0-m0"
    assert fake.calls[(0, b"m0")] == 2


def test_probation_draws_first_from_slots_already_rerun(tmp_path: Path) -> None:
    v = verifier(tmp_path, probation_checks=2, spot_check_rate=0.0)
    live = LiveJob("job1", from_mapping(SMALL))
    holders = {s: f"peer{s}" for s in range(SLOTS)}
    for _ in range(20):  # random draws: the rule holds for every one
        replicas, spot, probation = v.plan(live, holders, [], ready={1, 3})
        assert probation == {"peer1", "peer3"} and not replicas and not spot
        assert v.needs_rerun(live, holders, replicas, spot, probation) == [1, 3]
    _, _, probation = v.plan(live, holders, [], ready={2})
    assert "peer2" in probation and len(probation) == 2


def test_round_one_slots_follow_probation_checks(tmp_path: Path) -> None:
    live = LiveJob("job1", from_mapping(SMALL))
    assert len(verifier(tmp_path, probation_checks=2).round_one_slots(live, 4)) == 2
    assert verifier(tmp_path, probation_checks=8).round_one_slots(live, 4) == [0, 1, 2, 3]
    assert verifier(tmp_path, quarantine_contributions=0).round_one_slots(live, 4) == []


async def test_prefetch_runs_the_largest_tasks_first(tmp_path: Path, fake: FakeRerun) -> None:
    v = verifier(tmp_path)
    v._cores = trio.CapacityLimiter(1)  # one at a time: the order is the whole story

    class Sized:
        slots = [[(b"chunk", n)] * 2 for n in (5, 20, 1, 9)]

    live = LiveJob("job1", from_mapping(SMALL))
    await v.prefetch(live, JobData(Sized(), {}, b"m0", "", "00"), 1, [0, 1, 2, 3])  # type: ignore[arg-type]
    assert [slot for slot, _ in fake.calls] == [1, 3, 0, 2]
    assert v.ready(live, 1) == {0, 1, 2, 3}


async def test_a_cancelled_rerun_returns_at_once_and_its_thread_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled job does not wait for the owner's re-run (its trainers are told at once)."""
    started, stopped = threading.Event(), threading.Event()

    def endless(prepared: Any, spec: Any, model: bytes, slot: int, nonce: bytes,
                should_stop: Any) -> bytes:
        started.set()
        deadline = time.monotonic() + 60
        while not should_stop():  # a training loop checks between batches
            assert time.monotonic() < deadline, "should_stop never turned true"
            time.sleep(0.01)
        stopped.set()
        raise RuntimeError("stopped")

    monkeypatch.setattr(assess, "rerun", endless)
    v = verifier(tmp_path)
    live = LiveJob("job1", from_mapping(SMALL))
    with trio.move_on_after(60) as scope:  # the cancel below comes long before this
        async with trio.open_nursery() as nursery:
            nursery.start_soon(v._rerun, live, data(), 1, 0, ((0, 0),))
            await trio.to_thread.run_sync(started.wait, 60)
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught and v.ready(live, 1) == set()
    assert await trio.to_thread.run_sync(stopped.wait, 60)
