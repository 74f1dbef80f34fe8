"""The round state machine, driven with a fake clock and simulated trainers."""

from __future__ import annotations

import random
import time

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


def test_hundred_trainers_with_churn_and_bad_updates_in_well_under_a_second() -> None:
    t0 = time.perf_counter()
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
    elapsed = time.perf_counter() - t0
    assert len(closes) == 1 and closes[0].reason == "complete"
    assert {a.slot for a in closes[0].accepted} == set(range(100)), "every slot's data was used"
    assert len(closes[0].rejected) == 5
    assert {c.peer for c in charges if c.outcome == "vanished"} == {f"t{i}" for i in vanished}
    assert {c.peer for c in charges if c.outcome == "rejected"} == {f"t{i}" for i in bad}
    assert rnd.done and elapsed < 0.5


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
