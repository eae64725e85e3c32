"""The fair order and the adaptive limit, as tables."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

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


_turns = st.lists(
    st.builds(
        Turn,
        key=st.just(""),
        weight=st.sampled_from([0.5, 1.0, 1.0, 1.0, 2.0, 3.0]),
        room=st.integers(-1, 6),
        last_pass=st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 7.0]),
        seq=st.integers(0, 20),
    ),
    max_size=40,
)


@given(
    turns=_turns,
    free=st.integers(0, 30),
    base=st.sampled_from([0.0, 1.0, 2.5]),
    seq=st.integers(0, 50),
)
def test_rooms_asked_for_when_a_turn_comes_give_what_rooms_known_up_front_give(
    turns: list[Turn], free: int, base: float, seq: int
) -> None:
    for index, turn in enumerate(turns):
        turn.key = f"lane-{index}"
    known, lazy = copy.deepcopy(turns), copy.deepcopy(turns)
    rooms = [turn.room for turn in turns]
    for turn in lazy:
        turn.room = 99  # stale: never read when rooms are asked for
    asked: list[int] = []

    def room(index: int) -> int:
        asked.append(index)
        return rooms[index]

    expected = allot(known, free, base, seq)
    result = allot(lazy, free, base, seq, room)
    assert (result.counts, result.base, result.seq) == (
        expected.counts,
        expected.base,
        expected.seq,
    )
    assert sorted(result.served) == sorted(expected.served)
    served = {turns[i].key for i in result.served}
    assert served == set(result.counts)
    for before, after in zip(known, lazy, strict=True):
        if before.key in served:
            assert (before.last_pass, before.seq, before.room) == (
                after.last_pass,
                after.seq,
                after.room,
            )
    assert len(asked) == len(set(asked))  # each asked at most once


def test_with_many_lanes_and_few_free_slots_only_the_lanes_reached_are_asked_for_their_room() -> (
    None
):
    turns = [Turn(f"lane-{i}", 1, room=0, seq=i) for i in range(500)]
    asked: list[int] = []

    def room(index: int) -> int:
        asked.append(index)
        return 0 if index in (0, 2) else 4  # two of the first have nothing to run

    result = allot(turns, 3, 0.0, 500, room)
    assert result.counts == {"lane-1": 1, "lane-3": 1, "lane-4": 1}
    assert sorted(asked) == [0, 1, 2, 3, 4]  # the least recently served first, and no others


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
