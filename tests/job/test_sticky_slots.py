"""Slot holders keep their slot from round to round (their chunks are in their cache)."""

from __future__ import annotations

from protocols.job.owner.round import _sticky


def test_first_round_assigns_by_rank() -> None:
    assert _sticky([0, 1], ["a", "b", "c"], {}) == {0: "a", 1: "b"}


def test_a_reranked_holder_keeps_its_slot() -> None:
    assert _sticky([0, 1], ["b", "a"], {0: "a", 1: "b"}) == {0: "a", 1: "b"}


def test_rank_still_decides_who_holds_a_slot() -> None:
    # "b" fell out of the top two: its slot goes to the newcomer, "a" keeps slot 0.
    assert _sticky([0, 1], ["c", "a", "b"], {0: "a", 1: "b"}) == {0: "a", 1: "c"}


def test_fewer_peers_than_slots() -> None:
    assert _sticky([0, 1, 2], ["b"], {2: "b"}) == {2: "b"}
    assert _sticky([0, 1, 2], ["x"], {}) == {0: "x"}
