"""The per-function circuit breaker as a table: what counts as down, and each state change."""

from __future__ import annotations

import pytest

from connectors.core import breaker
from connectors.core.breaker import (
    KEPT_TEXT_CHARS,
    SETTINGS_KEPT,
    Breaker,
    BreakerSettings,
    BreakerState,
    annotated_settings,
    availability,
)
from connectors.core.gateway_answers import ProxyError, marked

CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN
SETTINGS = BreakerSettings(failures=3, open_for=10.0, max_open_for=40.0)


@pytest.mark.parametrize(
    ("status", "headers", "error", "timed_out", "final", "expected"),
    [
        (200, {}, "", False, False, True),
        (404, {}, "", False, False, True),  # the function's own answer
        (500, {}, "", False, False, True),  # a business error: the function is up
        (429, {}, "", False, False, None),  # overload: the limiter's
        (503, {"Retry-After": "2"}, "", False, False, None),
        (503, {}, "", False, False, False),
        (502, {}, "", False, False, False),
        (504, {}, "", False, False, False),
        (502, dict(marked(ProxyError.UNREACHABLE)), "", False, False, False),
        (502, dict(marked(ProxyError.TOO_LARGE)), "", False, False, True),  # it answered
        (404, {"X-OpenFaaS-Internal": "proxy"}, "", False, False, False),  # no such function
        (None, {}, "could not reach the gateway: refused", False, False, False),
        (None, {}, "timed out after 5s", True, False, False),
        (None, {}, "the request cannot be sent: bad", False, True, None),
        (None, {}, "the request body could not be read: gone", False, False, None),
    ],
)
def test_only_availability_failures_count(
    status: int | None,
    headers: dict[str, str],
    error: str,
    timed_out: bool,
    final: bool,
    expected: bool | None,
) -> None:
    assert availability(status, headers, error=error, timed_out=timed_out, final=final) is expected


def run(breaker: Breaker, steps: list[tuple[float, str]]) -> list[BreakerState]:
    """Each step at a time: `ok`/`down`/`none` reports a call started now; `tick` asks."""
    states = []
    for now, step in steps:
        breaker.tick(now)
        if step != "tick":
            assert breaker.admit()
            generation = breaker.generation
            breaker.record(generation, {"ok": True, "down": False, "none": None}[step], now)
        states.append(breaker.state)
    return states


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([(0, "down"), (0, "down"), (0, "down")], [CLOSED, CLOSED, OPEN]),
        ([(0, "down"), (0, "ok"), (0, "down"), (0, "down")], [CLOSED] * 4),  # consecutive only
        ([(0, "down"), (0, "none"), (0, "down"), (0, "down")], [CLOSED, CLOSED, CLOSED, OPEN]),
        (
            [(0, "down")] * 3 + [(9.9, "tick"), (10, "tick")],
            [CLOSED, CLOSED, OPEN, OPEN, HALF_OPEN],
        ),
        ([(0, "down")] * 3 + [(10, "ok")], [CLOSED, CLOSED, OPEN, CLOSED]),  # probe closes it
        (
            [(0, "down")] * 3 + [(10, "down"), (29, "tick"), (30, "tick")],
            [CLOSED, CLOSED, OPEN, OPEN, OPEN, HALF_OPEN],
        ),
        (
            [(0, "down")] * 3 + [(10, "none"), (10, "tick")],
            [CLOSED, CLOSED, OPEN, HALF_OPEN, HALF_OPEN],
        ),
    ],
)
def test_state_changes(steps: list[tuple[float, str]], expected: list[BreakerState]) -> None:
    assert run(Breaker(SETTINGS), steps) == expected


def test_the_open_period_doubles_while_probes_fail_and_is_capped_then_resets() -> None:
    breaker = Breaker(SETTINGS)
    run(breaker, [(0, "down")] * 3)
    periods = []
    now = 0.0
    for _ in range(4):
        now = breaker.until
        run(breaker, [(now, "down")])  # the probe fails
        periods.append(breaker.until - now)
    assert periods == [20.0, 40.0, 40.0, 40.0]
    run(breaker, [(breaker.until, "ok")])
    run(breaker, [(breaker.until, "down")] * 3)
    assert breaker.state is OPEN and breaker.open_for == 10.0


def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker = Breaker(SETTINGS)
    run(breaker, [(0, "down")] * 3)
    assert breaker.room() == 0 and not breaker.admit()
    breaker.tick(10)
    assert breaker.room() == 1
    assert breaker.admit()
    assert breaker.room() == 0 and not breaker.admit()  # a second call waits for the probe


def test_late_results_of_calls_started_before_a_change_do_not_count() -> None:
    breaker = Breaker(SETTINGS)
    old = breaker.generation
    run(breaker, [(0, "down")] * 3)
    assert breaker.record(old, True, 1) is None  # started while closed: ignored
    assert breaker.state is OPEN
    breaker.tick(10)
    assert breaker.admit()
    probe = breaker.generation
    assert breaker.record(old, False, 10) is None and breaker.state is HALF_OPEN
    change = breaker.record(probe, True, 10)
    assert change is not None and change.state is CLOSED and change.reason


def test_annotations_override_the_defaults_and_malformed_ones_are_ignored() -> None:
    both = {"ferry.breaker.failures": "2", "ferry.breaker.open_for": "500ms"}
    assert annotated_settings(both, SETTINGS) == BreakerSettings(2, 0.5, 40.0)
    bad = {"ferry.breaker.failures": "many", "ferry.breaker.open_for": "soon"}
    assert annotated_settings(bad, SETTINGS) == SETTINGS
    assert annotated_settings({"ferry.breaker.open_for": "1h"}, SETTINGS).open_for == 40.0


def test_annotations_are_read_once_per_pair_of_values_and_kept_bounded() -> None:
    annotations = {"ferry.breaker.failures": "4", "ferry.breaker.open_for": "2s", "topic": "t"}
    first = annotated_settings(annotations, SETTINGS)
    assert first == BreakerSettings(4, 2.0, 40.0)
    assert annotated_settings(dict(annotations), SETTINGS) is first  # kept, not read again
    other = BreakerSettings(failures=3, open_for=10.0, max_open_for=1.0)
    assert annotated_settings(annotations, other) == BreakerSettings(4, 1.0, 1.0)  # its bound
    for failures in range(1, 3 * SETTINGS_KEPT):
        settings = annotated_settings({"ferry.breaker.failures": str(failures)}, SETTINGS)
        assert settings.failures == min(failures, 1000)
        assert breaker._settings_kept.cache_info().currsize <= SETTINGS_KEPT
    long = "0" * KEPT_TEXT_CHARS + "3s"  # read each time, never kept
    misses = breaker._settings_kept.cache_info().misses
    assert annotated_settings({"ferry.breaker.open_for": long}, SETTINGS).open_for == 3.0
    assert breaker._settings_kept.cache_info().misses == misses
