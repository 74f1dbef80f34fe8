"""Prices, the clearing price, a round's payments and the paid-job selection score (pure)."""

from __future__ import annotations

from protocols.job.selection import OfferInfo, score, select
from protocols.market.terms import AskRule, ask_for, clearing_price, pay_round

A, B, C = "0x" + "a" * 40, "0x" + "b" * 40, "0x" + "c" * 40


def test_ask_rules() -> None:
    assert ask_for(AskRule(ask=100), queued=5) == 100
    queue = AskRule(ask=100, rule="queue", ask_per_queued=10)
    assert [ask_for(queue, q) for q in (0, 1, 3)] == [100, 110, 130]


def test_clearing_price_is_the_highest_ask_capped_by_the_maximum() -> None:
    assert clearing_price([30, 70, 50], max_price=100) == 70
    assert clearing_price([30, 170], max_price=100) == 100
    assert clearing_price([], max_price=100) == 0


def test_round_pays_per_update_or_per_ksamples_never_over_budget() -> None:
    used = [("p1", A, "u1", 2000), ("p2", B, "u2", 500), ("p3", "", "u3", 900)]
    per_update = pay_round(used, price=10, unit="update", left=1000)
    assert [(p.peer, p.amount) for p in per_update] == [("p1", 10), ("p2", 10)]  # no wallet: 0
    per_k = pay_round(used, price=10, unit="ksamples", left=1000)
    assert [p.amount for p in per_k] == [20, 5]
    short = pay_round(used, price=10, unit="update", left=15)
    assert [p.amount for p in short] == [10, 5]
    assert pay_round(used, price=10, unit="update", left=0) == []


def test_paid_selection_refuses_high_asks_and_walletless_offers_and_ranks_by_score() -> None:
    offers = [
        OfferInfo("cheap", 80.0, 1, 4, ask=10, address=A),
        OfferInfo("pricey", 90.0, 1, 4, ask=90, address=B),
        OfferInfo("greedy", 99.0, 1, 4, ask=101, address=C),
        OfferInfo("nowallet", 99.0, 1, 4, ask=1, address=""),
    ]
    chosen, spares = select(offers, {}, wanted=1, spares=5, min_health=0, floor=-40,
                            max_price=100)
    assert chosen == ["cheap"] and spares == ["pricey"]
    # Reputation can outweigh price: 100 points of reputation beat a 80-point dearer ask.
    chosen, _ = select(offers, {"pricey": 100.0}, wanted=1, spares=0, min_health=0,
                       floor=-40, max_price=100)
    assert chosen == ["pricey"]
    assert score(offers[0], 0.0, 100) == 0.5 * 80 - 10
    # An unpaid job keeps the old order (reputation, health) and ignores asks.
    chosen, _ = select(offers, {}, wanted=1, spares=0, min_health=0, floor=-40)
    assert chosen in (["greedy"], ["nowallet"])
