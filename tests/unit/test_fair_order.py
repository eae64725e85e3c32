"""The fair order and the adaptive limit, as tables."""

from __future__ import annotations

import pytest

from connectors.core.aimd import AimdLimit
from queue_worker.fair_order import Turn, allot


def shares(weights: dict[str, float], free: int, rounds: int = 1) -> dict[str, int]:
    turns = [Turn(key, weight, room=10_000) for key, weight in weights.items()]
    total: dict[str, int] = dict.fromkeys(weights, 0)
    base, seq = 0.0, 0
    for _ in range(rounds):
        result = allot(turns, free, base, seq)
        base, seq = result.base, result.seq
        for key, count in result.counts.items():
            total[key] += count
    return total


@pytest.mark.parametrize(
    ("weights", "free", "expected"),
    [
        ({"a": 1, "b": 1}, 4, {"a": 2, "b": 2}),
        ({"a": 3, "b": 1}, 8, {"a": 6, "b": 2}),
        ({"a": 1, "b": 1, "c": 1}, 3, {"a": 1, "b": 1, "c": 1}),
        ({"a": 2, "b": 1, "c": 1}, 8, {"a": 4, "b": 2, "c": 2}),
    ],
)
def test_free_slots_go_to_lanes_in_proportion_to_their_weight(
    weights: dict[str, float], free: int, expected: dict[str, int]
) -> None:
    assert shares(weights, free) == expected


def test_one_slot_at_a_time_still_alternates() -> None:
    assert shares({"a": 1, "b": 1}, 1, rounds=10) == {"a": 5, "b": 5}


def test_a_lane_gets_no_more_than_its_room() -> None:
    turns = [Turn("capped", 1, room=2), Turn("open", 1, room=100)]
    assert allot(turns, 10, 0.0, 0).counts == {"capped": 2, "open": 8}


def test_an_idle_lane_cannot_save_up_credit() -> None:
    busy, idle = Turn("busy", 1, room=1000), Turn("idle", 1, room=0)
    result = allot([busy, idle], 100, 0.0, 0)  # only busy ran for a long time
    idle.room = 1000
    burst = allot([busy, idle], 10, result.base, result.seq)
    assert burst.counts == {"busy": 5, "idle": 5}


def test_the_limit_starts_at_its_maximum() -> None:
    assert AimdLimit(maximum=16).allowed == 16


def test_the_refusals_of_one_window_bring_the_limit_to_what_the_function_accepted() -> None:
    limit = AimdLimit(maximum=16)
    generation = limit.generation
    assert limit.dropped(generation, still_running=15)  # the window's one cut: 16 -> 12
    assert limit.allowed == 12
    for running in range(14, 3, -1):  # 11 more refusals while 4 calls are accepted
        assert not limit.dropped(generation, still_running=running)
    assert limit.allowed == 4


def test_growth_is_one_per_window_and_needs_load() -> None:
    limit = AimdLimit(maximum=16, limit=4)
    limit.succeeded(inflight=1)  # far below half the limit: no growth
    assert limit.limit == 4
    for _ in range(4):
        limit.succeeded(inflight=4)
    assert limit.allowed == 4 and limit.limit > 4.9


def test_the_limit_stays_within_its_bound() -> None:
    limit = AimdLimit(maximum=3)
    for _ in range(50):
        limit.succeeded(inflight=3)
    assert limit.allowed == 3
    limit.bound(2)
    assert limit.allowed == 2
