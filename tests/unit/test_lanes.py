"""How one attempt's answer maps onto its function's lane: limit, pause, attempt counted."""

from __future__ import annotations

import time

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from connectors.core.invoker import InvocationResult
from queue_worker.lanes import (
    MAX_FREE_RETURNS,
    Fate,
    Lane,
    annotated_cap,
    annotated_weight,
    header_count,
)


def lane(adaptive: bool = True, running: int = 8) -> Lane:
    made = Lane(subject="faas-request.fn.f", durable="d", inbox="i", slots=16, adaptive=adaptive)
    made.learn("f", {})
    made.consumer_ready, made.backlog = True, 100
    for _ in range(running):
        made.delivered()
    return made


def answer(status: int | None, **headers: str) -> InvocationResult:
    return InvocationResult(
        function="f",
        status=status,
        attempt=1,
        duration=0.01,
        headers=CIMultiDictProxy(CIMultiDict(headers)),
    )


@pytest.mark.parametrize(
    ("status", "headers", "adaptive", "fate", "cut", "paused"),
    [
        (200, {}, True, Fate.COUNTED, False, False),
        (500, {}, True, Fate.COUNTED, False, False),
        (503, {}, True, Fate.COUNTED, False, False),  # no Retry-After: not overload
        (429, {}, True, Fate.RETURNED, True, False),
        (429, {"Retry-After": "5"}, True, Fate.RETURNED, True, True),
        (503, {"Retry-After": "5"}, True, Fate.RETURNED, True, True),
        (429, {"Retry-After": "5"}, False, Fate.COUNTED, False, True),  # limiter off
        (None, {}, True, Fate.COUNTED, False, False),  # unreachable
    ],
)
def test_an_answer_maps_onto_the_lane(
    status: int | None,
    headers: dict[str, str],
    adaptive: bool,
    fate: Fate,
    cut: bool,
    paused: bool,
) -> None:
    under_test = lane(adaptive)
    before = under_test.limit.limit
    got = under_test.outcome(answer(status, **headers), under_test.started(), returns=0)
    assert got is fate
    assert (under_test.limit.limit < before) is cut
    assert (under_test.paused_until > time.monotonic()) is paused
    if paused:  # a paused lane is given no slots
        assert under_test.room(time.monotonic(), 0) == 0


def test_a_call_sent_back_too_often_counts_its_429s() -> None:
    under_test = lane()
    result = under_test.outcome(answer(429), under_test.started(), returns=MAX_FREE_RETURNS)
    assert result is Fate.COUNTED


def test_a_cap_bounds_the_lane_and_an_unknown_lane_runs_one_call() -> None:
    fresh = Lane(subject="s", durable="d", inbox="i", slots=16, adaptive=True)
    assert fresh.allowed == 1
    fresh.learn("f", {"ferry.max_inflight": "3", "ferry.weight": "2"})
    assert (fresh.allowed, fresh.turn.weight) == (3, 2.0)


@pytest.mark.parametrize(
    ("text", "weight", "cap"),
    [("", 1.0, None), ("x", 1.0, None), ("-2", 1.0, None), ("0", 1.0, None), ("4", 4.0, 4)],
)
def test_annotations_that_are_not_positive_numbers_are_ignored(
    text: str, weight: float, cap: int | None
) -> None:
    assert annotated_weight({"ferry.weight": text}) == weight
    assert annotated_cap({"ferry.max_inflight": text}) == cap


def test_header_counts_are_bounded() -> None:
    assert header_count(None, "n") == 0
    assert header_count({"n": "x"}, "n") == 0
    assert header_count({"n": "99999999999"}, "n") == 1_000_000
