"""A lane with a breaker: what it pulls while open, half-open or paused, and which failed calls
go back to the queue without using an attempt."""

from __future__ import annotations

import time

from connectors.core.breaker import BreakerSettings, BreakerState
from queue_worker.lanes import PROBE, REFUSED, Fate, Lane
from tests.unit.test_lanes import answer

SETTINGS = BreakerSettings(failures=2, open_for=30.0)


def lane(running: int = 0) -> Lane:
    made = Lane(
        subject="faas-request.fn.f",
        durable="d",
        inbox="i",
        slots=16,
        adaptive=True,
        breaker_defaults=SETTINGS,
    )
    made.learn("f", {})
    made.consumer_ready, made.backlog = True, 100
    for _ in range(running):
        made.delivered()
    return made


def test_failures_past_the_threshold_open_it_and_the_calls_are_held_not_counted() -> None:
    under_test = lane(running=3)
    generations = under_test.started()
    assert under_test.outcome(answer(503), generations, returns=0) is Fate.COUNTED
    under_test.finished()
    assert under_test.outcome(answer(None), generations, returns=0) is Fate.COUNTED  # not down
    under_test.finished()
    assert under_test.outcome(answer(502), generations, returns=0) is Fate.HELD
    assert under_test.breaker is not None and under_test.breaker.state is BreakerState.OPEN
    assert under_test.room(time.monotonic(), 0) == 0
    assert not under_test.admits()


def test_a_late_failure_after_it_opened_is_held_too() -> None:
    under_test = lane(running=4)
    generations = under_test.started()
    for _ in range(2):
        under_test.outcome(answer(504), generations, returns=0)
        under_test.finished()
    assert under_test.outcome(answer(504), generations, returns=0) is Fate.HELD
    assert under_test.outcome(answer(500), generations, returns=0) is Fate.COUNTED


def test_half_open_pulls_one_probe() -> None:
    under_test = lane()
    generations = under_test.started()
    for _ in range(2):
        under_test.outcome(answer(503), generations, returns=0)
    assert under_test.breaker is not None
    under_test.breaker.until = time.monotonic()  # the open period is over
    assert under_test.room(time.monotonic(), 0) == 1
    assert under_test.admits() and not under_test.admits()


def test_a_paused_lane_pulls_nothing_and_admits_nothing() -> None:
    under_test = lane()
    under_test.paused = True
    assert under_test.room(time.monotonic(), 0) == 0
    assert not under_test.admits()
    under_test.paused = False
    assert under_test.room(time.monotonic(), 0) > 1


def test_with_the_breaker_off_a_down_function_is_counted_as_before() -> None:
    off = Lane(subject="s", durable="d", inbox="i", slots=16, adaptive=True)
    off.learn("f", {})
    for _ in range(10):
        off.delivered()
        assert off.outcome(answer(503), off.started(), returns=0) is Fate.COUNTED
        off.finished()


def test_a_probe_that_ends_without_telling_up_from_down_lets_another_call_probe() -> None:
    under_test = lane()
    generations = under_test.started()
    for _ in range(2):
        under_test.outcome(answer(503), generations, returns=0)
    assert under_test.breaker is not None
    under_test.breaker.until = time.monotonic()
    under_test.delivered()
    assert under_test.admits() == PROBE
    under_test.outcome(answer(429), under_test.started(), returns=0)  # overload: says neither
    assert under_test.admits() == REFUSED  # the probe still runs
    under_test.finished(probe=True)
    assert under_test.admits() == PROBE
