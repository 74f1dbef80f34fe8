"""The owner learns trainers' speeds and sizes their shares (protocols/job/owner/speeds.py).

The book is fed the events the round runner feeds it, with a real SQLite job store;
the last test runs a job over the in-process network (tests/job/memnet.py) with real
training, one trainer doing eight times the work per sample.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pnode.jobstore import JobStore
from protocols.job.owner import OwnerConfig
from protocols.job.owner.config import LiveJob
from protocols.job.owner.speeds import SpeedBook, samples
from protocols.job.ports import ChunkRow
from protocols.job.spec import from_mapping
from protocols.job.trainer import Trainer
from tests.job.test_job_inprocess import SMALL, run_job, start
from tests.s3servers import ServerHandle

EPOCHS = 2


def home(slots: int, per_slot: int, size: int = 100) -> dict[int, list[ChunkRow]]:
    return {
        s: [ChunkRow(s, i, f"k{s}.{i}", f"{s:02x}{i:062x}", 1000, size) for i in range(per_slot)]
        for s in range(slots)
    }


def task(book: SpeedBook, live: LiveJob, peer: str, slot: int, t0: float, took: float,
         claim: float) -> None:
    book.started(live, peer, slot, 10_000, t0)
    book.announced(live, peer, claim, t0 + took)
    book.finished(live, peer, slot)


def test_speeds_are_learnt_kept_and_size_the_shares(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    book = SpeedBook(store, OwnerConfig(shares_min_tasks=2))
    live = LiveJob("job1", from_mapping({**SMALL, "epochs": 1}))
    data = home(2, 8)
    holders = {0: "fast", 1: "slow"}
    book.layout(live, data, holders, 10_000)
    assert live.shares["plan"] == "no_figures" and samples(live, 0) == samples(live, 1) == 800
    # Round 1 was a cold start: the slow peer looked fast, the fast one slow; the
    # second task replaces those figures (and here, sizing waits for it).
    task(book, live, "fast", 0, 0.0, 20.0, 10.0)
    task(book, live, "slow", 1, 0.0, 1.0, 0.5)
    assert book.layout(live, data, holders, 10_000) and live.shares["plan"] == "no_figures"
    task(book, live, "fast", 0, 10.0, 1.0, 0.8)  # 800 samples in 0.8 s: 1000/s
    task(book, live, "slow", 1, 10.0, 4.0, 3.2)  # 250/s
    # The model down and an update as big up (no new chunk): 20 kB in 0.2 s.
    assert store.speeds("job1")["fast"] == pytest.approx((1000.0, 100_000.0, 2))
    layout = book.layout(live, data, holders, 10_000)
    assert live.shares["plan"] == "sized"
    # 0.2 s + n / 1000 = 0.8 s + m / 250 with n + m = 1600: 1400 and 200, 1.6 s each.
    assert samples(live, 0) == 1400 and samples(live, 1) == 200, live.shares
    assert live.shares["predicted_round_s"] == pytest.approx(1.6)
    assert sorted(c.sha256 for cs in layout.values() for c in cs) == sorted(
        c.sha256 for cs in data.values() for c in cs)
    assert live.shares["speeds"]["slow"]["tasks"] == 2
    # A restarted owner reads the figures back and sizes the same way.
    store.close()
    again = SpeedBook(JobStore(tmp_path / "jobs.sqlite3"), OwnerConfig())
    fresh = LiveJob("job1", live.spec)
    again.layout(fresh, data, holders, 10_000)
    assert samples(fresh, 0) == 1400
    # With shares = "equal" every slot keeps its own chunks whatever the figures.
    equal = LiveJob("job1", dataclasses.replace(live.spec, shares="equal"))
    again.layout(equal, data, holders, 10_000)
    assert equal.layout == {s: tuple(cs) for s, cs in data.items()}
    assert equal.shares["plan"] == "equal"


def test_round_1_is_the_probe_that_sizes_round_2(tmp_path: Path) -> None:
    book = SpeedBook(JobStore(tmp_path / "jobs.sqlite3"), OwnerConfig())
    live = LiveJob("job1", from_mapping({**SMALL, "epochs": 1}))
    data = home(3, 8)
    holders = {0: "a", 1: "b", 2: "slow"}
    book.layout(live, data, holders, 10_000)
    assert live.shares["plan"] == "no_figures"
    # Round 1: a and b train 800 samples in 0.8 s, "slow" in 3.2 s.
    task(book, live, "a", 0, 0.0, 1.0, 0.8)
    task(book, live, "b", 1, 0.0, 1.0, 0.8)
    task(book, live, "slow", 2, 0.0, 3.4, 3.2)
    book.layout(live, data, holders, 10_000)
    # Round 2: (T - 0.14) * (1000 + 1000 + 250) = 2400 samples: T = 1.2 s, not 3.3 s.
    assert live.shares["plan"] == "sized", live.shares
    assert [samples(live, s) for s in range(3)] == [1100, 1000, 300], live.shares


def test_a_link_too_slow_for_any_share_sits_out_from_its_second_task(tmp_path: Path) -> None:
    book = SpeedBook(JobStore(tmp_path / "jobs.sqlite3"), OwnerConfig())
    live = LiveJob("job1", from_mapping({**SMALL, "epochs": 1}))
    data = home(3, 8)
    holders = {0: "a", 1: "b", 2: "far"}
    book.layout(live, data, holders, 10_000)
    # Round 1: the same compute (800 samples in 0.8 s), but "far"'s link took 5 s
    # to move the model down, its chunks and the update up (28 kB), the others 0.2 s.
    for peer, slot, took in (("a", 0, 1.0), ("b", 1, 1.0), ("far", 2, 5.8)):
        task(book, live, peer, slot, 0.0, took, 0.8)
    book.layout(live, data, holders, 10_000)
    # One task may be a cold start: "far" keeps at least a quarter share, and that
    # would save only 0.6 s of its 4.4 s (the model alone takes 3.6 s): kept.
    assert live.shares["plan"] == "kept" and samples(live, 2) == 800, live.shares
    for peer, slot, took in (("a", 0, 1.0), ("b", 1, 1.0), ("far", 2, 4.4)):
        task(book, live, peer, slot, 10.0, took, 0.8)
    layout = book.layout(live, data, holders, 10_000)
    # Its second task says the same: a and b take all 2400 samples (0.2 + 1.2 s) before
    # "far" could have moved the model (3.6 s). It sits the round out, keeping its slot
    # and its figures.
    assert live.shares["plan"] == "sized", live.shares
    assert [samples(live, s) for s in range(3)] == [1200, 1200, 0] and layout[2] == ()
    assert live.shares["slots"]["2"] == {"peer": "far", "samples": 0, "predicted_s": 0.0}
    assert live.shares["predicted_round_s"] == pytest.approx(1.4, abs=1e-3)
    # The next rounds start from that layout and keep it, until "far" has sat out
    # shares_reprobe_rounds (10) rounds in a row: then it gets a share again, so its
    # link is measured anew (here 200 samples, the smallest share, as its figures
    # still say that it is slow).
    for _ in range(9):
        book.layout(live, data, holders, 10_000)
        assert live.shares["plan"] == "kept" and samples(live, 2) == 0
    book.layout(live, data, holders, 10_000)
    assert live.shares["plan"] == "sized" and samples(live, 2) == 200, live.shares


def test_one_slow_task_never_benches_a_trainer(tmp_path: Path) -> None:
    book = SpeedBook(JobStore(tmp_path / "jobs.sqlite3"), OwnerConfig())
    live = LiveJob("job1", from_mapping({**SMALL, "epochs": 1}))
    data = home(3, 8)
    holders = {0: "a", 1: "b", 2: "c"}
    book.layout(live, data, holders, 10_000)
    # c's round 1 is a cold start (5 s more than the others), its round 2 is normal,
    # its round 3 a bad moment (5 s again): each time, the task before or after
    # says it is as fast as the others, so it keeps a share every round.
    for t0, took in ((0.0, 5.8), (10.0, 1.0), (20.0, 5.8)):
        for peer, slot in (("a", 0), ("b", 1)):
            task(book, live, peer, slot, t0, 1.0, 0.8)
        task(book, live, "c", 2, t0, took, 0.8)
        book.layout(live, data, holders, 10_000)
        assert samples(live, 2) > 0, (t0, live.shares)
    # A second slow task in a row: now it sits out.
    for peer, slot in (("a", 0), ("b", 1)):
        task(book, live, peer, slot, 30.0, 1.0, 0.8)
    task(book, live, "c", 2, 30.0, 5.8, 0.8)
    book.layout(live, data, holders, 10_000)
    assert samples(live, 2) == 0 and live.shares["plan"] == "sized", live.shares


def test_a_lying_trainer_is_bounded_by_the_owners_clock(tmp_path: Path) -> None:
    book = SpeedBook(JobStore(tmp_path / "jobs.sqlite3"), OwnerConfig())
    live = LiveJob("job1", from_mapping({**SMALL, "epochs": 1}))
    data = home(2, 8)
    holders = {0: "honest", 1: "liar"}
    book.layout(live, data, holders, 10_000)
    for t0 in (0.0, 10.0):
        task(book, live, "honest", 0, t0, 1.0, 0.8)
        # Claims to train instantly, and then impossibly, but took 4 s by the owner's clock.
        task(book, live, "liar", 1, t0, 4.0, 0.0 if t0 else math.nan)
    liar = book.speeds("job1")["liar"][0]
    assert liar.samples_per_s <= 800 / (0.1 * 4.0)
    book.layout(live, data, holders, 10_000)
    # Whatever it claims, the slower peer by the owner's clock is not given more.
    assert samples(live, 1) <= samples(live, 0)
    assert samples(live, 1) <= OwnerConfig().shares_max * 800


def test_a_rejected_or_unstarted_update_teaches_nothing(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    book = SpeedBook(store, OwnerConfig())
    live = LiveJob("job1", from_mapping(SMALL))
    book.layout(live, home(2, 2), {0: "a", 1: "b"}, 1000)
    book.announced(live, "a", 1.0, 5.0)
    book.finished(live, "a", 0)  # never started
    book.started(live, "b", 1, 1000, 0.0)
    book.announced(live, "b", 1.0, 2.0)
    book.end_round(live)  # its update was rejected: the round ends without finished()
    book.finished(live, "b", 1)
    assert store.speeds("job1") == {}


class SlowMachine(Trainer):
    """A machine that takes 5 ms more per sample and epoch than this one.

    The extra time is waited, not computed, so how much slower it is does not
    depend on how loaded the machine running the test is; it reports the extra
    time as training, as a slow machine would.
    """

    async def train_task(self, job: Any, model: bytes, chunks: list[bytes],
                         stop: Any) -> Any:
        result = await super().train_task(job, model, chunks, stop)
        extra = 0.005 * result.metrics.samples * EPOCHS
        await trio.sleep(extra)
        metrics = dataclasses.replace(result.metrics, seconds=result.metrics.seconds + extra)
        return dataclasses.replace(result, metrics=metrics)


async def test_a_slow_trainer_gets_a_smaller_share_and_replicas_still_agree(
    tmp_path: Path, nanio_server: ServerHandle
) -> None:
    kinds: list[type[Trainer]] = [SlowMachine, Trainer, Trainer, Trainer]
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp_path, nanio_server, kinds)
        slow = c.trainers[0].node.peer_id.to_base58()
        # Holders are ranked by reputation each round: a head start keeps the slow
        # machine a holder (a spare's speed does not size anything).
        for _ in range(3):
            c.owner.reputation.charge(slow, "accepted")
        status = await run_job(c, trainers=3, spares=1, redundancy=0.3, rounds=3, model="mlp",
                               epochs=EPOCHS, model_params={"hidden": [64]},
                               chunk_samples=50)
        assert status["state"] == "done", status
        shares = c.owner.live[status["job_id"]].shares  # jobs.status "shares"
        brief = [[(u["peer"][-4:], u["slot"], u["samples"], u["verdict"]) for u in r["updates"]]
                 for r in status["history"]]
        assert shares["plan"] in ("sized", "kept") and shares["speeds"][slow]["tasks"] >= 1, (
            slow[-4:], shares, brief)
        first, last = status["history"][0], status["history"][-1]
        # Round 1 has no figures: every slot keeps the partition's share.
        assert len({u["samples"] for u in first["updates"]}) == 1, first
        # Round 1 sized the later ones: the slow machine holds its slot with a smaller
        # share, or none (it sits the round out when even its smallest share would
        # end the round after the others finish all the data).
        per_slot = {int(k): v["samples"] for k, v in shares["slots"].items()}
        slow_slot = next(int(k) for k, v in shares["slots"].items() if v["peer"] == slow)
        assert all(per_slot[slow_slot] < n for s, n in per_slot.items() if s != slow_slot), (
            shares, brief)
        assert per_slot == {u["slot"]: u["samples"] for u in last["updates"]} | {
            slow_slot: per_slot[slow_slot]}, brief
        assert sum(per_slot.values()) == sum({u["slot"]: u["samples"]
                                              for u in first["updates"]}.values())
        # The redundant slot's two trainers got the same sized chunk list: bit-identical
        # updates, both verified by the comparison.
        twins = [u for u in last["updates"]
                 if sum(v["slot"] == u["slot"] for v in last["updates"]) == 2]
        assert len(twins) == 2 and twins[0]["sha256"] == twins[1]["sha256"], last
        assert twins[0]["sha256"] in last["verified_updates"], last
        nursery.cancel_scope.cancel()
