"""Trainer selection and reputation arithmetic (pure)."""

from __future__ import annotations

import pytest

from protocols.job.selection import OfferInfo, ReputationConfig, decayed, select, updated


def test_select_ranks_by_reputation_then_health_and_drops_unfit() -> None:
    offers = [
        OfferInfo("a", 90, 1, 2),
        OfferInfo("b", 50, 1, 2),
        OfferInfo("c", 95, 0, 2),  # no free slot
        OfferInfo("d", 10, 1, 2),  # below min health
        OfferInfo("e", 60, 1, 2),
        OfferInfo("f", 99, 1, 2),  # below the reputation floor
        OfferInfo("a", 90, 1, 2),  # duplicate offer
    ]
    rep = {"b": 30.0, "f": -45.0}
    chosen, spares = select(offers, rep, wanted=2, spares=5, min_health=20, floor=-40)
    assert chosen == ["b", "a"]
    assert spares == ["e"]


def test_reputation_outcomes_and_decay() -> None:
    cfg = ReputationConfig()
    s = updated(0.0, 0, "accepted", cfg)
    assert s == 10.0
    assert updated(s, 0, "vanished", cfg) == -20.0
    assert decayed(40.0, cfg.half_life_s, cfg) == pytest.approx(20.0)
    assert updated(95.0, 0, "accepted", cfg) == cfg.cap
    with pytest.raises(ValueError):  # nothing charges "forged": unverified bytes name nobody
        updated(0.0, 0, "forged", cfg)
    with pytest.raises(ValueError):
        cfg.delta("nonsense")
