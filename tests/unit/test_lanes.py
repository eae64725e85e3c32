"""How one attempt's answer maps onto its function's lane: limit, pause, attempt counted."""

from __future__ import annotations

import time

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
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


_WORK = dict.fromkeys(("asked_ahead", "requests"), 0) | {"known": True, "consumer_ready": True}
_OPEN = {"paused": False, "paused_for": 0.0, "batch_max": 0}


@settings(max_examples=1000)
@given(
    backlog=st.integers(0, 4),
    inflight=st.integers(0, 4),
    asked=st.integers(0, 4),
    asked_ahead=st.integers(0, 2),
    ready=st.integers(0, 2),
    unsorted=st.integers(0, 2),
    requests=st.integers(0, 5),
    known=st.booleans(),
    consumer_ready=st.booleans(),
    paused=st.booleans(),
    paused_for=st.sampled_from([0.0, 5.0]),
    batch_max=st.sampled_from([0, 1, 4]),
)
@example(backlog=0, inflight=0, asked=0, ready=1, unsorted=0, **_WORK, **_OPEN)
@example(backlog=0, inflight=0, asked=0, ready=0, unsorted=1, **_WORK, **_OPEN)
@example(backlog=3, inflight=1, asked=1, ready=0, unsorted=0, **_WORK, **_OPEN)
def test_a_lane_without_work_never_has_room(
    backlog: int,
    inflight: int,
    asked: int,
    asked_ahead: int,
    ready: int,
    unsorted: int,
    requests: int,
    known: bool,
    consumer_ready: bool,
    paused: bool,
    paused_for: float,
    batch_max: int,
) -> None:
    """The fair scheduler looks only at lanes with work (`has_work`): none it leaves out
    could have been given a slot."""
    made = Lane(subject="faas-request.fn.f", durable="d", inbox="i", slots=16, adaptive=True)
    if known:
        made.learn("f", {})
    made.consumer_ready, made.paused = consumer_ready, paused
    made.backlog, made.inflight = backlog, inflight
    made.asked, made.asked_ahead = asked, min(asked_ahead, asked)
    made.ready.extend(object() for _ in range(ready))  # type: ignore[misc]
    made.unsorted.extend((object(), 0.0) for _ in range(unsorted))  # type: ignore[misc]
    made.requests.extend([n, 1, 0.0, 0] for n in range(requests))
    now = time.monotonic()
    made.paused_until = now + paused_for
    if made.room(now, batch_max) > 0:
        assert made.has_work
    if not made.has_work:
        assert made.room(now, batch_max) == 0
