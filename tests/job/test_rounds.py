"""The round state machine, driven with a fake clock and simulated trainers."""

from __future__ import annotations

import random

import pytest

from protocols.job.rounds import Accepted, Charge, CheckUpdate, Close, Fail, Round, SendTask


def make_round(n: int, spares: int = 0, **kw: object) -> Round:
    args: dict[str, object] = dict(
        quorum=n, min_updates=1, deadline_s=60.0, backup_after_s=None, now=0.0
    )
    args.update(kw)
    return Round(
        1,
        {i: f"t{i}" for i in range(n)},
        [f"s{i}" for i in range(spares)],
        **args,  # type: ignore[arg-type]
    )


def test_hundred_trainers_with_churn_and_bad_updates() -> None:
    rng = random.Random(7)
    rnd = make_round(100, spares=20, quorum=100, deadline_s=60.0)
    actions = rnd.start()
    assert sorted(a.slot for a in actions if isinstance(a, SendTask)) == list(range(100))
    holders = {a.slot: a.peer for a in actions if isinstance(a, SendTask)}
    vanished = set(rng.sample(range(100), 10))
    bad = set(rng.sample(sorted(set(range(100)) - vanished), 5))
    closes: list[Close] = []
    charges: list[Charge] = []
    now = 0.0
    queue = list(holders.items())
    while queue:
        slot, peer = queue.pop(0)
        now += 0.1
        if peer.startswith("t") and int(peer[1:]) in vanished:
            out = rnd.gone(peer, now)
        else:
            out = []
            for a in rnd.announced(peer, f"sha-{peer}"):
                assert isinstance(a, CheckUpdate) and a.slot == slot
                ok = not (peer.startswith("t") and int(peer[1:]) in bad)
                out += rnd.checked(peer, slot, a.sha256, ok, now)
        for a in out:
            if isinstance(a, SendTask):
                queue.append((a.slot, a.peer))
            elif isinstance(a, Close):
                closes.append(a)
            elif isinstance(a, Charge):
                charges.append(a)
    assert len(closes) == 1 and closes[0].reason == "complete"
    assert {a.slot for a in closes[0].accepted} == set(range(100)), "every slot's data was used"
    assert len(closes[0].rejected) == 5
    assert {c.peer for c in charges if c.outcome == "vanished"} == {f"t{i}" for i in vanished}
    assert {c.peer for c in charges if c.outcome == "rejected"} == {f"t{i}" for i in bad}
    assert rnd.done


def test_quorum_closes_early_and_late_results_are_ignored() -> None:
    rnd = make_round(4, quorum=3)
    rnd.start()
    out = []
    for i in range(3):
        (chk,) = rnd.announced(f"t{i}", f"h{i}")
        assert isinstance(chk, CheckUpdate)
        out += rnd.checked(f"t{i}", i, f"h{i}", True, now=1.0)
    close = [a for a in out if isinstance(a, Close)]
    assert close and close[0].reason == "quorum" and len(close[0].accepted) == 3
    assert rnd.announced("t3", "h3") == []


def test_deadline_closes_with_min_updates_or_fails_without() -> None:
    rnd = make_round(3, min_updates=2, deadline_s=10.0)
    rnd.start()
    rnd.announced("t0", "a")
    rnd.checked("t0", 0, "a", True, now=1.0)
    assert rnd.tick(9.9) == []
    assert rnd.tick(10.0) == [Fail("deadline")]
    rnd2 = make_round(3, min_updates=1, deadline_s=10.0)
    rnd2.start()
    rnd2.announced("t1", "b")
    rnd2.checked("t1", 1, "b", True, now=1.0)
    (close,) = rnd2.tick(10.0)
    assert isinstance(close, Close) and close.reason == "deadline"
    assert close.accepted == (Accepted("t1", 1, "b"),)


def test_straggler_gets_backup_and_first_valid_result_wins() -> None:
    rnd = make_round(2, spares=1, deadline_s=30.0, backup_after_s=10.0)
    rnd.start()
    rnd.announced("t0", "a")
    rnd.checked("t0", 0, "a", True, now=2.0)
    assert rnd.tick(9.0) == []
    (backup,) = rnd.tick(10.0)
    assert backup == SendTask("s0", 1, backup=True)
    (chk,) = rnd.announced("s0", "spare-hash")
    out = rnd.checked("s0", 1, chk.sha256, True, now=12.0)
    close = [a for a in out if isinstance(a, Close)][0]
    # After the backup time the result is marked late: the owner charges "late", once,
    # when the round closes (the machine itself charges no accepted update).
    assert Accepted("s0", 1, "spare-hash", late=True) in close.accepted
    assert not any(isinstance(a, Charge) for a in out)
    assert rnd.announced("t0", "again") == [] and rnd.tick(40.0) == []


def test_all_gone_without_spares_fails_at_once() -> None:
    rnd = make_round(2)
    rnd.start()
    rnd.gone("t0", 1.0)
    assert rnd.gone("t1", 1.0)[-1] == Fail("no_trainers")


def test_updates_from_peers_without_a_slot_are_ignored() -> None:
    rnd = make_round(2)
    rnd.start()
    assert rnd.announced("stranger", "x") == []
    assert rnd.checked("stranger", 0, "x", True, now=1.0) == []


def test_invalid_construction_is_refused() -> None:
    with pytest.raises(ValueError):
        Round(1, {}, quorum=1, min_updates=1, deadline_s=1, backup_after_s=None, now=0)
    with pytest.raises(ValueError):
        make_round(2, quorum=3)


# --- verification: replicas, arbiters, spot checks, probation (docs/verification.md) ---

from protocols.job.records import Compared  # noqa: E402
from protocols.job.rounds import Compare  # noqa: E402
from protocols.job.verification import judge, plan, quarantined, task_nonce, task_seed  # noqa: E402


def _deliver(rnd: Round, peer: str, slot: int, now: float = 1.0) -> list[object]:
    out: list[object] = []
    for a in rnd.announced(peer, f"sha-{peer}"):
        assert isinstance(a, CheckUpdate) and a.slot == slot
        out += rnd.checked(peer, slot, a.sha256, True, now)
    return out


def test_agreeing_replicas_are_both_accepted_as_one_slot() -> None:
    rnd = make_round(2, replicas={0: "r0"})
    sent = rnd.start()
    assert {(a.peer, a.slot) for a in sent if isinstance(a, SendTask)} == {
        ("t0", 0), ("r0", 0), ("t1", 1)
    }
    assert _deliver(rnd, "t0", 0) == []  # waits for its replica
    assert _deliver(rnd, "t1", 1) == []
    out = _deliver(rnd, "r0", 0)
    assert out == [Compare(0, ("r0", "t0"), owner=False)]
    out = rnd.feed(Compared(0, ("r0", "t0"), ()), 2.0)
    (close,) = out
    assert isinstance(close, Close) and close.reason == "complete" and close.cheaters == ()
    by_peer = {a.peer: a for a in close.accepted}
    assert by_peer["t0"].share == by_peer["r0"].share == 0.5
    assert by_peer["t0"].verified and not by_peer["t1"].verified
    assert by_peer["t1"].share == 1.0


def test_disagreeing_replicas_get_an_arbiter_and_the_outlier_is_charged() -> None:
    rnd = make_round(1, spares=1, replicas={0: "r0"})
    rnd.start()
    _deliver(rnd, "t0", 0)
    assert _deliver(rnd, "r0", 0) == [Compare(0, ("r0", "t0"), owner=False)]
    out = rnd.feed(Compared(0, (), ()), 2.0)
    assert out == [SendTask("s0", 0, replica=True)]
    assert _deliver(rnd, "s0", 0) == [Compare(0, ("r0", "s0", "t0"), owner=False)]
    out = rnd.feed(Compared(0, ("s0", "t0"), ("r0",)), 3.0)
    assert out[0] == Charge("r0", "cheated")
    close = out[-1]
    assert isinstance(close, Close) and close.cheaters == ("r0",)
    assert {a.peer for a in close.accepted} == {"s0", "t0"}


def test_without_spares_the_owner_arbitrates() -> None:
    rnd = make_round(1, replicas={0: "r0"})
    rnd.start()
    _deliver(rnd, "t0", 0)
    _deliver(rnd, "r0", 0)
    assert rnd.feed(Compared(0, (), ()), 2.0) == [Compare(0, ("r0", "t0"), owner=True)]
    out = rnd.feed(Compared(0, ("t0",), ("r0",)), 3.0)
    assert out[0] == Charge("r0", "cheated")
    assert isinstance(out[-1], Close) and [a.peer for a in out[-1].accepted] == ["t0"]


def test_a_spot_checked_cheater_is_dropped_and_its_slot_passes_on() -> None:
    rnd = make_round(2, spares=1, spot=[1])
    rnd.start()
    assert _deliver(rnd, "t0", 0) == []
    assert _deliver(rnd, "t1", 1) == [Compare(1, ("t1",), owner=True)]
    out = rnd.feed(Compared(1, (), ("t1",)), 2.0)
    assert out == [Charge("t1", "cheated"), SendTask("s0", 1)]
    assert _deliver(rnd, "s0", 1) == [Compare(1, ("s0",), owner=True)]  # still checked
    (close,) = rnd.feed(Compared(1, ("s0",), ()), 3.0)
    assert isinstance(close, Close) and close.cheaters == ("t1",)
    assert {a.peer for a in close.accepted} == {"t0", "s0"}
    assert rnd.add_spare("t1") == []  # a cheater gets no further task


def test_a_cheater_loses_every_result_it_had_in_the_round() -> None:
    rnd = make_round(2, spot=[1], quorum=2)
    rnd.start()
    rnd.slots[0].holders.add("t1")  # t1 also backs slot 0 up
    assert _deliver(rnd, "t1", 0) == []  # slot 0 settled by t1
    assert _deliver(rnd, "t1", 1) == [Compare(1, ("t1",), owner=True)]
    rnd.feed(Compared(1, (), ("t1",)), 2.0)
    assert all(a.peer != "t1" for a in rnd.accepted)
    assert rnd.settled == 0


def test_probation_peers_are_checked_by_the_owner() -> None:
    rnd = make_round(2, probation=["t1"])
    rnd.start()
    assert _deliver(rnd, "t0", 0) == []
    assert _deliver(rnd, "t1", 1) == [Compare(1, ("t1",), owner=True)]


def test_plan_judge_nonce_and_quarantine() -> None:
    import random as _random

    p = plan(list(range(10)), 0.2, 0.0, _random.Random(1))
    assert len(p.redundant) == 2 and not p.spot
    p = plan(list(range(1000)), 0.0, 0.1, _random.Random(1))
    assert not p.redundant and 50 < len(p.spot) < 150
    d = {("a", "b"): 1e-7, ("a", "c"): 0.9, ("b", "c"): 0.9}

    def dist(x: str, y: str) -> float:
        return d.get((x, y), d.get((y, x), 0.0))

    assert judge(["a", "b", "c"], dist, 1e-3) == (("a", "b"), ("c",))
    assert judge(["a", "c"], dist, 1e-3) == ((), ())
    assert judge(["a", "c"], dist, 1e-3, reference={"a": 0.0, "c": 0.5}) == (("a",), ("c",))
    n1, n2 = task_nonce(b"k", "j", 1, 0), task_nonce(b"k", "j", 1, 1)
    assert n1 == task_nonce(b"k", "j", 1, 0) and n1 != n2 and n1 != task_nonce(b"x", "j", 1, 0)
    assert task_seed(0, n1) != task_seed(0, n2)
    assert quarantined(["a", "b"], {"a": 1}, 1) == {"b"}


def test_identical_bytes_of_two_tasks_send_both_to_the_owners_rerun() -> None:
    from protocols.job.records import Duplicate

    rnd = make_round(3)
    rnd.start()
    assert _deliver(rnd, "t0", 0) == []  # settled, unverified
    out = rnd.feed(Duplicate(("t0", "t1")), 1.0)
    assert out == [Compare(0, ("t0",), owner=True)]  # taken back and checked
    assert _deliver(rnd, "t1", 1) == [Compare(1, ("t1",), owner=True)]
    assert rnd.feed(Compared(0, ("t0",), ()), 2.0) == []
    out = rnd.feed(Compared(1, (), ("t1",)), 2.0)  # the copy is off its own task
    assert out == [Charge("t1", "cheated")]
    assert rnd.accepted[0].verified and rnd.cheaters == ["t1"]


def test_against_the_owners_rerun_a_near_miss_is_unsure_not_cheated() -> None:
    from protocols.job.verification import against_rerun

    ref = {"same": 0.0, "gpu": 0.01, "lazy": 0.9}
    assert against_rerun(ref, 1e-3, 0.2) == (("same",), ("lazy",), ("gpu",))
    rnd = make_round(1, spot=[0])
    rnd.start()
    assert _deliver(rnd, "t0", 0) == [Compare(0, ("t0",), owner=True)]
    (close,) = rnd.feed(Compared(0, ("t0",), (), verified=False), 2.0)
    assert isinstance(close, Close) and not close.accepted[0].verified and not close.cheaters
