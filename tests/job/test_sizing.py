"""Share sizing by measured speed (protocols/job/sizing.py): pure, no sockets."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.job.sizing import Limits, Observation, Plan, Speed, blend, plan, speed_of


@dataclass(frozen=True)
class Chunk:
    name: str
    samples: int
    size: int = 1000


def slots(k: int, per_slot: int = 8, samples: int = 100) -> dict[int, list[Chunk]]:
    return {s: [Chunk(f"{s}.{i}", samples) for i in range(per_slot)] for s in range(k)}


def shares(p: Plan[Chunk]) -> dict[int, int]:
    return {s: sum(c.samples for c in cs) for s, cs in p.layout.items()}


def same_chunks(before: dict[int, list[Chunk]], p: Plan[Chunk]) -> bool:
    """Every chunk once; a slot loses all its chunks only when sized to nothing."""
    a = Counter(c for cs in before.values() for c in cs)
    b = Counter(c for cs in p.layout.values() for c in cs)
    return a == b and all(p.layout[s] or p.targets.get(s) == 0 for s in before if before[s])


def test_fast_trainers_get_more_and_all_finish_together() -> None:
    current = slots(4)
    fast, slow = Speed(1000.0, 1e9), Speed(250.0, 1e9)
    p = plan(current, {0: fast, 1: fast, 2: slow, 3: slow}, epochs=1, fixed_bytes=0)
    assert p.reason == "sized"
    got = shares(p)
    # Targets 1280 and 320 (four times the speed, four times the work), rounded to
    # whole chunks of 100.
    assert math.isclose(p.targets[0], 1280) and math.isclose(p.targets[2], 320)
    assert got[0] == got[1] == 1300 and got[2] == got[3] == 300, got
    assert same_chunks(current, p)
    # Equal shares: the slow ones take 800/250 = 3.2 s; sized, 1.3 s and 1.2 s.
    assert p.before_s == 3.2
    assert p.predicted_s == {0: 1.3, 1: 1.3, 2: 1.2, 3: 1.2}


def test_a_slow_link_gets_less_work_when_the_model_is_big() -> None:
    # Same compute; trainer 1's link makes the model and update take 10 s.
    current = slots(2, per_slot=10)
    p = plan(current, {0: Speed(100.0, 1e8), 1: Speed(100.0, 1e5)},
             epochs=1, fixed_bytes=1_000_000)
    got = shares(p)
    assert got[0] > got[1], got
    assert p.makespan_s < p.before_s


def test_a_link_too_slow_for_any_share_sits_the_round_out() -> None:
    # Same compute (1000 samples/s); trainer 2's link makes the model down and the
    # update up take 10 s, while the others finish the whole round's data in 1.2 s.
    current = slots(3, per_slot=4)
    fast, slow = Speed(1000.0, 1e8), Speed(1000.0, 1e5)
    p = plan(current, {0: fast, 1: fast, 2: slow}, epochs=1, fixed_bytes=1_000_000)
    assert p.reason == "sized" and shares(p) == {0: 600, 1: 600, 2: 0}
    assert p.targets[2] == 0 and p.layout[2] == () and same_chunks(current, p)
    # Before: 10 s + 0.4 s of training on the slow one; after: 0.01 + 0.6 s.
    assert math.isclose(p.before_s, 10.4) and math.isclose(p.makespan_s, 0.61)
    assert p.predicted_s[2] == 0.0 and "slot 2: 0 samples (sits out)" in p.explain()
    # The next round starts from that layout: it stays, and the idle slot gets its
    # share back once its figures say it is worth it.
    again = plan(p.layout, {0: fast, 1: fast, 2: slow}, epochs=1, fixed_bytes=1_000_000)
    assert again.reason == "kept" and shares(again) == {0: 600, 1: 600, 2: 0}
    back = plan(p.layout, {0: fast, 1: fast, 2: fast}, epochs=10, fixed_bytes=1_000_000)
    assert back.reason == "sized" and shares(back) == {0: 400, 1: 400, 2: 400}
    # Only the slots named may sit out: the others keep at least min_share (here
    # that would save 0.3 of 10.4 s: the layout is kept).
    kept_in = plan(current, {0: fast, 1: fast, 2: slow}, epochs=1, fixed_bytes=1_000_000,
                   may_sit_out=[0, 1])
    assert kept_in.targets[2] == 100 and kept_in.reason == "kept"


def test_a_slot_that_may_not_sit_out_any_more_gets_its_share_back() -> None:
    # Slot 2 sat out; its holder is new (or due to be measured again): it gets at
    # least min_share back although, by the figures, that makes the round longer.
    current = {0: slots(1, per_slot=6)[0], 1: slots(1, per_slot=6)[0], 2: []}
    fast, slow = Speed(1000.0, 1e8), Speed(1000.0, 1e5)
    p = plan(current, {0: fast, 1: fast, 2: slow}, epochs=1, fixed_bytes=1_000_000,
             may_sit_out=[])
    # Targets 550, 550, 100: no slot is half a chunk over, so the empty one takes a
    # chunk from the first most over its target.
    assert p.reason == "sized" and shares(p) == {0: 500, 1: 600, 2: 100}, shares(p)
    assert p.makespan_s > p.before_s and same_chunks(current, p)


def test_a_slow_link_keeps_a_share_while_it_still_helps() -> None:
    # Training 400 samples takes 4 s; trainer 2's fixed cost is 3 s: it takes part
    # with a smaller share (T = (3 * 4 + 3) / 3 = 5 s: 200 samples), not none.
    current = slots(3, per_slot=4)
    fast, slow = Speed(100.0, 1e8), Speed(100.0, 1e6 / 3)
    p = plan(current, {0: fast, 1: fast, 2: slow}, epochs=1, fixed_bytes=1_000_000)
    assert p.reason == "sized" and shares(p) == {0: 500, 1: 500, 2: 200}, shares(p)
    assert math.isclose(p.targets[2], 200.67, rel_tol=1e-3)
    assert math.isclose(p.makespan_s, 5.01) and math.isclose(p.before_s, 7.0)


def test_at_most_max_share_each_so_not_everyone_sits_out() -> None:
    # Two of four links are hopeless (1000 s and 2000 s for the model), but with
    # max_share 1.5 the two fast slots take only 1200 of the 1600 samples: the
    # slowest sits out, the other slow slot keeps what the fast ones cannot take.
    current = slots(4, per_slot=4)
    fast = Speed(1000.0, 1e9)
    speeds = {0: fast, 1: fast, 2: Speed(1000.0, 1e3), 3: Speed(1000.0, 500.0)}
    p = plan(current, speeds, epochs=1, fixed_bytes=10**6, limits=Limits(max_share=1.5))
    assert p.reason == "sized" and shares(p) == {0: 600, 1: 600, 2: 400, 3: 0}, shares(p)
    assert same_chunks(current, p)
    # Two equally hopeless links: leaving one out would not end the round sooner.
    speeds[3] = speeds[2]
    assert plan(current, speeds, epochs=1, fixed_bytes=10**6,
                limits=Limits(max_share=1.5)).reason == "kept"


def test_equal_speeds_keep_the_layout() -> None:
    current = slots(3)
    s = Speed(500.0, 1e7)
    p = plan(current, {0: s, 1: s, 2: s}, epochs=2, fixed_bytes=10_000)
    assert p.reason == "kept"
    assert {k: list(v) for k, v in p.layout.items()} == current


def test_small_differences_do_not_reshuffle_the_data() -> None:
    p = plan(slots(2), {0: Speed(100.0, 1e9), 1: Speed(115.0, 1e9)}, epochs=1, fixed_bytes=0)
    assert p.reason == "kept"
    # Ten times slower, but the round would end 0.6 s sooner (min_gain_s 1 s): kept.
    speeds = {0: Speed(1000.0, 1e9), 1: Speed(100.0, 1e9)}
    tiny = plan(slots(2, per_slot=2, samples=40), speeds, epochs=1, fixed_bytes=0)
    assert tiny.reason == "kept" and math.isclose(tiny.before_s, 0.8)
    lim = Limits(min_gain_s=0.0)
    sized = plan(slots(2, per_slot=2, samples=40), speeds, epochs=1, fixed_bytes=0, limits=lim,
                 may_sit_out=[])
    # Its target is min_share (20 samples), half a chunk: it keeps one chunk.
    assert sized.reason == "sized" and shares(sized) == {0: 120, 1: 40}, shares(sized)
    out = plan(slots(2, per_slot=2, samples=40), speeds, epochs=1, fixed_bytes=0, limits=lim)
    assert shares(out) == {0: 160, 1: 0}  # allowed to sit out, it does


def test_shares_stay_within_bounds() -> None:
    current = slots(4, per_slot=20, samples=10)
    lim = Limits(min_share=0.5, max_share=1.5)
    p = plan(current, {0: Speed(1e6, 1e9), 1: Speed(1.0, 1e9), 2: Speed(1.0, 1e9),
                       3: Speed(1.0, 1e9)}, epochs=1, fixed_bytes=0, limits=lim)
    equal = 200
    for s, n in shares(p).items():
        assert lim.min_share * equal - 10 <= n <= lim.max_share * equal + 10, (s, n)
    assert same_chunks(current, p)


def test_no_figures_one_slot_and_unknown_peers() -> None:
    current = slots(3)
    assert plan(current, {}, epochs=1, fixed_bytes=0).reason == "no_figures"
    one = plan(slots(1), {0: Speed(1.0, 1.0)}, epochs=1, fixed_bytes=0)
    assert one.reason == "one_slot" and shares(one) == {0: 800}
    # Slot 2's holder is unknown: taken as fast as the median known peer.
    fast, slow = Speed(1000.0, 1e9), Speed(500.0, 1e9)
    p = plan(slots(4), {0: fast, 1: slow, 2: None, 3: fast}, epochs=2, fixed_bytes=0)
    got = shares(p)
    assert got[0] == got[2] == got[3] > got[1] > 0, got
    # One ten times slower sits out: even its smallest share (a quarter of the
    # equal one) would take longer than the others need for all the data.
    p = plan(slots(4), {0: fast, 1: Speed(100.0, 1e9), 2: None, 3: fast}, epochs=1,
             fixed_bytes=0)
    assert shares(p) == {0: 1100, 1: 0, 2: 1100, 3: 1000}


def test_hostile_figures_never_crash_and_never_lose_data() -> None:
    current = slots(4)
    bad = [Speed(0.0, 1e6), Speed(math.nan, 1e6), Speed(math.inf, math.inf),
           Speed(-5.0, 1e6), Speed(1e300, 1e300), Speed(1e-300, 1e-300)]
    for b in bad:
        p = plan(current, {0: b, 1: Speed(100.0, 1e6), 2: b, 3: Speed(100.0, 1e6)},
                 epochs=3, fixed_bytes=10**12)
        assert same_chunks(current, p), b
        assert all(math.isfinite(t) for t in p.predicted_s.values()), b


def test_speed_of_bounds_the_trainers_claim_by_the_owners_measurement() -> None:
    honest = speed_of(Observation(1000, 2e6, seconds=4.0, train_seconds=2.0))
    assert honest == Speed(500.0, 1e6)
    # A claim of no training at all is taken as 10% of the measured time; one
    # longer than the task itself as all of it.
    assert speed_of(Observation(1000, 2e6, 4.0, 0.0)) == Speed(2500.0, 2e6 / 3.6)
    whole = speed_of(Observation(1000, 2e6, 4.0, 99.0))
    assert whole is not None and whole.samples_per_s == 250.0
    assert whole.bytes_per_s == Limits().clamp(Speed(1, 2e6 / 0.004)).bytes_per_s
    assert speed_of(Observation(1000, 2e6, 4.0, math.nan)) == whole
    for seconds in (0.0, -1.0, math.nan, math.inf):
        assert speed_of(Observation(1000, 2e6, seconds, 1.0)) is None
    assert speed_of(Observation(0, 2e6, 4.0, 1.0)) is None
    huge = speed_of(Observation(1e300, 1e300, 1e-300, 1e-300))
    assert huge == Speed(Limits().max_samples_per_s, Limits().max_bytes_per_s)


def test_blend_averages_times_not_rates() -> None:
    # 100/s and 300/s: a sample takes 10 ms and 3.3 ms; their mean 6.7 ms is 150/s.
    mixed = blend(Speed(100.0, 1e6), Speed(300.0, 1e6))
    assert math.isclose(mixed.samples_per_s, 150.0)
    assert blend(None, Speed(1.0, 2.0)) == Speed(1.0, 2.0)
    assert blend(Speed(math.nan, 1.0), Speed(1.0, 2.0)) == Speed(1.0, 2.0)


def test_many_trainers_is_fast_and_exact() -> None:
    current = slots(500, per_slot=4)
    speeds: dict[int, Speed | None] = {s: Speed(100.0 * (1 + s % 5), 1e7) for s in range(500)}
    p = plan(current, speeds, epochs=1, fixed_bytes=100_000)
    assert p.reason == "sized" and same_chunks(current, p)
    got = shares(p)
    assert got[4] > got[0]


def test_deterministic() -> None:
    speeds: dict[int, Speed | None] = {0: Speed(10.0, 1e5), 1: Speed(30.0, 1e7),
                                       2: None, 3: Speed(20.0, 1e6)}
    a = plan(slots(4, per_slot=5), speeds, epochs=2, fixed_bytes=50_000)
    b = plan(slots(4, per_slot=5), dict(reversed(list(speeds.items()))),
             epochs=2, fixed_bytes=50_000)
    assert a == b
    assert "slot 0" in a.explain()


figure = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.floats(min_value=1e-3, max_value=1e6))


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(0, 5000), min_size=1, max_size=6), min_size=1,
                   max_size=12),
    rates=st.lists(st.one_of(st.none(), st.tuples(figure, figure)), min_size=12, max_size=12),
    epochs=st.integers(-3, 50),
    fixed=st.integers(-10, 10**10),
    out=st.one_of(st.none(), st.sets(st.integers(0, 11))),
)
def test_any_input_keeps_every_chunk_once(
    sizes: list[list[int]], rates: list[tuple[float, float] | None], epochs: int, fixed: int,
    out: set[int] | None,
) -> None:
    current = {s: [Chunk(f"{s}.{i}", n) for i, n in enumerate(ns)] for s, ns in enumerate(sizes)}
    speeds = {s: None if r is None else Speed(*r) for s, r in enumerate(rates)}
    p = plan(current, speeds, epochs=epochs, fixed_bytes=fixed, may_sit_out=out)
    assert same_chunks(current, p)
    if p.reason == "sized":
        assert p.makespan_s < p.before_s
        # Only a slot allowed to sit out ends up without a chunk.
        assert all(p.layout[s] for s in current if out is not None and s not in out)
