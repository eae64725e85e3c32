"""A connector's per-function limits: the line of waiting calls, and a bounded map."""

from __future__ import annotations

import asyncio

import pytest

from connectors.core import function_limits
from connectors.core.breaker import BreakerSettings
from connectors.core.function_limits import FunctionLimit, FunctionLimits
from connectors.core.invoker import InvocationResult
from connectors.core.retry import RetryPolicy

POLICY = RetryPolicy(max_attempts=3, initial_wait=0.0, max_wait=0.0, codes=frozenset({429}))


def answer(status: int) -> InvocationResult:
    return InvocationResult("fn", status, 1, 0.0)


async def test_a_call_over_the_limit_waits_and_the_first_in_line_gets_the_freed_room() -> None:
    limit = FunctionLimit(slots=1, adaptive=True, cap=None)
    assert limit.take()
    first = asyncio.create_task(limit.wait())
    second = asyncio.create_task(limit.wait())
    await asyncio.sleep(0)
    assert not limit.take()  # nobody jumps the line
    limit.release()
    assert await first
    assert not second.done()
    limit.stop()
    assert await second is False


async def test_a_cancelled_waiter_leaves_the_line_and_gives_back_room_it_was_given() -> None:
    limit = FunctionLimit(slots=1, adaptive=True, cap=None)
    assert limit.take()
    waiter = asyncio.create_task(limit.wait())
    await asyncio.sleep(0)
    limit.release()  # admits the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limit.inflight == 0 and not limit.waiters


async def test_an_overload_cuts_the_limit_to_what_the_function_still_runs() -> None:
    limit = FunctionLimit(slots=16, adaptive=True, cap=None)
    for _ in range(5):
        assert limit.take()
    generation = limit.limit.generation
    assert limit.outcome(answer(429), generation, POLICY)
    assert limit.allowed == 4
    assert not limit.outcome(answer(500), generation, POLICY)  # not overload
    assert limit.throttled == 1


async def test_the_cap_bounds_the_limit_with_the_limiter_off_too() -> None:
    limit = FunctionLimit(slots=16, adaptive=False, cap=3)
    assert [limit.take() for _ in range(4)] == [True, True, True, False]


async def test_idle_functions_are_dropped_when_the_map_is_full_and_busy_ones_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(function_limits, "REMEMBERED", 10)
    limits = FunctionLimits(slots=4, adaptive=True)
    busy = limits.entry("busy", None)
    assert busy.take()
    for index in range(30):
        limits.entry(f"fn-{index}", None)
        assert len(limits) <= 11
    assert limits.by_name["busy"] is busy


BREAKER = BreakerSettings(failures=2, open_for=0.05)


def _failed(limit: FunctionLimit, status: int = 503) -> bool:
    """One admitted call that ends with `status`: whether the breaker holds it."""
    generation = limit.breaker_generation()
    held = limit.held(answer(status), generation)
    limit.release()
    return held


async def test_an_open_breaker_holds_its_calls_in_line_then_lets_one_probe_through() -> None:
    limit = FunctionLimit(slots=8, adaptive=True, cap=None, breaker=BREAKER, name="fn")
    assert limit.take() and limit.take()
    assert not _failed(limit)  # one failure: counted as usual
    assert _failed(limit)  # the second opens it: this call waits, unattempted
    assert not limit.take()
    first = asyncio.create_task(limit.wait())
    second = asyncio.create_task(limit.wait())
    assert await asyncio.wait_for(first, 1)  # the period is over: the probe
    await asyncio.sleep(0.1)
    assert not second.done()  # one probe at a time
    generation = limit.breaker_generation()
    assert not limit.held(answer(200), generation)  # the probe succeeded: closed
    limit.release()
    assert await asyncio.wait_for(second, 1)
    assert limit.take()


async def test_a_functions_own_500s_never_open_its_breaker() -> None:
    limit = FunctionLimit(slots=8, adaptive=True, cap=None, breaker=BREAKER, name="fn")
    for _ in range(5):
        assert limit.take()
        assert not _failed(limit, 500)
    assert limit.take()


async def test_a_probe_that_ends_without_an_answer_lets_the_next_call_probe() -> None:
    limit = FunctionLimit(slots=8, adaptive=True, cap=None, breaker=BREAKER, name="fn")
    for _ in range(2):
        assert limit.take()
        _failed(limit)
    probe = asyncio.create_task(limit.wait())
    assert await asyncio.wait_for(probe, 1)
    waiting = asyncio.create_task(limit.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    limit.release()  # the probe raised before it was sent: no outcome told
    assert await asyncio.wait_for(waiting, 1)  # the next call is the probe now
