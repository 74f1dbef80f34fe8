import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.aggregate import (
    RULES,
    AggregateResult,
    RuleConfig,
    ServerState,
    Update,
    aggregate,
)
from training.errors import AggregationError, SpecError, TooFewUpdates

SHAPES = {"w": (3, 4), "b": (5,)}
SIZE = 17
GLOBAL = {k: torch.zeros(s) for k, s in SHAPES.items()}
finite = st.floats(-100, 100, allow_nan=False, width=32)


@st.composite
def rounds(draw: st.DrawFn, min_n: int = 1, max_n: int = 9) -> list[Update]:
    n = draw(st.integers(min_n, max_n))
    flat = draw(arrays(np.float32, (n, SIZE), elements=finite))
    samples = draw(st.lists(st.integers(1, 1000), min_size=n, max_size=n))
    ups = []
    for i in range(n):
        t = torch.from_numpy(flat[i].copy())
        ups.append(Update({"w": t[:12].view(3, 4), "b": t[12:]}, samples[i], f"u{i}"))
    return ups


def flat(state: dict) -> torch.Tensor:
    return torch.cat([state["w"].reshape(-1), state["b"]])


def rule_for(name: str, n: int) -> RuleConfig:
    f = max(0, (n - 3) // 2) if name in ("krum", "multi_krum") else 0
    return RuleConfig(name=name, f=f, trim=0.2)


@settings(max_examples=100, deadline=None)
@given(rounds())
def test_fedavg_is_the_sample_weighted_mean(ups: list[Update]) -> None:
    out = aggregate(GLOBAL, ups, RuleConfig())
    w = torch.tensor([u.samples for u in ups], dtype=torch.float64)
    mat = torch.stack([flat(u.weights) for u in ups]).double()
    expected = (w[:, None] * mat).sum(0) / w.sum()
    assert torch.allclose(flat(out.weights).double(), expected, atol=1e-3, rtol=1e-5)
    assert out.used_ids == tuple(sorted(u.id for u in ups))


@settings(max_examples=60, deadline=None)
@given(rounds(min_n=3), st.randoms(use_true_random=False))
def test_every_rule_is_invariant_to_update_order(ups: list[Update], rnd) -> None:
    shuffled = list(ups)
    rnd.shuffle(shuffled)
    for name in RULES:
        rule = rule_for(name, len(ups))
        a, b = aggregate(GLOBAL, ups, rule), aggregate(GLOBAL, shuffled, rule)
        assert torch.equal(flat(a.weights), flat(b.weights)), name
        assert a.used_ids == b.used_ids


@settings(max_examples=100, deadline=None)
@given(rounds())
def test_median_matches_torch_median(ups: list[Update]) -> None:
    out = flat(aggregate(GLOBAL, ups, RuleConfig(name="median")).weights)
    mat = torch.stack([flat(u.weights) for u in ups])
    n = len(ups)
    if n % 2:
        assert torch.equal(out, mat.median(dim=0).values)
    else:
        # Documented semantics: even counts give the mean of the two middle values;
        # torch.median returns the lower one.
        srt = mat.sort(dim=0).values
        lower = mat.median(dim=0).values
        assert torch.equal(srt[n // 2 - 1], lower)
        assert torch.allclose(out, (lower + srt[n // 2]) / 2)


@settings(max_examples=100, deadline=None)
@given(rounds())
def test_trimmed_mean_with_zero_trim_is_the_mean(ups: list[Update]) -> None:
    out = flat(aggregate(GLOBAL, ups, RuleConfig(name="trimmed_mean", trim=0.0)).weights)
    mean = torch.stack([flat(u.weights) for u in ups]).double().mean(0)
    assert torch.allclose(out.double(), mean, atol=1e-4, rtol=1e-5)


@settings(max_examples=60, deadline=None)
@given(rounds(min_n=1, max_n=1), st.integers(3, 9))
def test_identical_updates_return_that_update(one: list[Update], n: int) -> None:
    base = one[0].weights
    ups = [Update({k: v.clone() for k, v in base.items()}, i + 1, f"u{i}") for i in range(n)]
    for name in RULES:
        if name.startswith("fed") and name != "fedavg":
            continue  # FedOpt takes a server step; it does not return the mean
        out = aggregate(GLOBAL, ups, rule_for(name, n))
        assert torch.allclose(flat(out.weights), flat(base), atol=1e-4, rtol=1e-5), name


def test_flat_tensor_updates_are_accepted() -> None:
    a = Update(torch.ones(SIZE), 1, "a")
    b = Update({"w": torch.full((3, 4), 3.0), "b": torch.full((5,), 3.0)}, 3, "b")
    out = aggregate(GLOBAL, [a, b], RuleConfig())
    assert torch.allclose(flat(out.weights), torch.full((SIZE,), 2.5))


@pytest.mark.parametrize(
    ("rule", "n", "need"),
    [
        (RuleConfig(name="krum", f=2), 6, 7),
        (RuleConfig(name="multi_krum", f=3), 8, 9),
        (RuleConfig(name="multi_krum", f=1, m=5), 5, 6),
        (RuleConfig(name="median", f=2), 4, 5),
        (RuleConfig(name="trimmed_mean", f=2, trim=0.0), 4, 5),
        (RuleConfig(name="fedavg", min_updates=3), 2, 3),
    ],
)
def test_too_few_updates_is_refused(rule: RuleConfig, n: int, need: int) -> None:
    ups = [Update({k: torch.ones(s) for k, s in SHAPES.items()}, 1, f"u{i}") for i in range(n)]
    with pytest.raises(TooFewUpdates) as info:
        aggregate(GLOBAL, ups, rule)
    assert (info.value.rule, info.value.have, info.value.need) == (rule.name, n, need)


def test_inconsistent_updates_are_refused() -> None:
    good = {k: torch.ones(s) for k, s in SHAPES.items()}
    cases = {
        "duplicate_id": [Update(good, 1, "a"), Update(good, 1, "a")],
        "samples": [Update(good, 0, "a")],
        "names": [Update({"w": good["w"]}, 1, "a")],
        "shape": [Update({**good, "b": torch.ones(6)}, 1, "a")],
    }
    for reason, ups in cases.items():
        with pytest.raises(AggregationError) as info:
            aggregate(GLOBAL, ups, RuleConfig())
        assert info.value.reason == reason


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "mean"},
        {"trim": 0.5},
        {"f": -1},
        {"noise_multiplier": 1.0},
        {"clip_norm": 0.0},
        {"beta1": 1.0},
        {"bogus": 1},
        {"m": 0},
    ],
)
def test_bad_rule_config(bad: dict) -> None:
    with pytest.raises(SpecError):
        RuleConfig.from_mapping(bad)


def test_clipping_bounds_each_update_and_noise_is_seeded() -> None:
    big = Update({k: torch.full(s, 100.0) for k, s in SHAPES.items()}, 1, "big")
    small = Update({k: torch.full(s, 0.01) for k, s in SHAPES.items()}, 1, "small")
    clipped = aggregate(GLOBAL, [big, small], RuleConfig(clip_norm=1.0))
    assert float(flat(clipped.weights).norm()) <= 1.0 + 1e-5
    noisy = RuleConfig(clip_norm=1.0, noise_multiplier=1.0, seed=3)
    a, b = aggregate(GLOBAL, [big, small], noisy), aggregate(GLOBAL, [big, small], noisy)
    assert torch.equal(flat(a.weights), flat(b.weights))
    assert not torch.equal(flat(a.weights), flat(clipped.weights))
    later = aggregate(GLOBAL, [big, small], noisy, ServerState("fedavg", round=1))
    assert not torch.equal(flat(later.weights), flat(a.weights))


@pytest.mark.parametrize("name", ["fedadam", "fedyogi", "fedadagrad"])
def test_fedopt_state_saves_and_restores(name: str) -> None:
    rule = RuleConfig(name=name, server_lr=0.5)
    ups = [
        Update({k: torch.full(s, float(i)) for k, s in SHAPES.items()}, 1, f"u{i}")
        for i in range(1, 4)
    ]
    r1 = aggregate(GLOBAL, ups, rule)
    restored = ServerState.decode(r1.state.encode())
    direct = aggregate(r1.weights, ups, rule, r1.state)
    via_bytes = aggregate(r1.weights, ups, rule, restored)
    assert torch.equal(flat(direct.weights), flat(via_bytes.weights))
    assert direct.state.round == 2
    again = ServerState.from_tensors(name, r1.state.to_tensors())
    assert torch.equal(flat(aggregate(r1.weights, ups, rule, again).weights), flat(direct.weights))
    # The server step moves towards the clients' mean (2.0) from 0.
    assert 0 < float(flat(r1.weights)[0]) < 2.0
    with pytest.raises(AggregationError):
        aggregate(
            GLOBAL, ups, RuleConfig(name="fedyogi" if name != "fedyogi" else "fedadam"), r1.state
        )
    with pytest.raises(AggregationError):
        ServerState.decode(b"garbage-bytes")


def test_krum_drops_the_outlier() -> None:
    ups = [
        Update({k: torch.full(s, 1.0 + 0.01 * i) for k, s in SHAPES.items()}, 1, f"h{i}")
        for i in range(6)
    ]
    ups.append(Update({k: torch.full(s, -50.0) for k, s in SHAPES.items()}, 1000, "evil"))
    out: AggregateResult = aggregate(GLOBAL, ups, RuleConfig(name="multi_krum", f=1))
    assert "evil" not in out.used_ids and len(out.used_ids) == 6
    assert "evil" not in aggregate(GLOBAL, ups, RuleConfig(name="krum", f=1)).used_ids
