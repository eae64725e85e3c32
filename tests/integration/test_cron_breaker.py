"""The circuit breaker in the cron connector: a slot whose function is down waits, unattempted
once the breaker is open, and runs when the function is back, instead of being retried to its
last attempt and given up on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.clock import FakeClock
from tests.support.cron import cron, sample, utc
from tests.support.http import FakeGateway
from tests.support.outage import DownFunction
from tests.support.ports import eventually


@pytest.fixture
async def down() -> AsyncIterator[DownFunction]:
    function = DownFunction()
    yield function
    await function.close()


async def test_a_slot_whose_function_is_down_waits_and_runs_once_it_is_back(
    gateway: FakeGateway, down: DownFunction
) -> None:
    gateway.subscribe("down", "cron-function", schedule="* * * * *")
    gateway.function("down", down.handler())
    clock = FakeClock(utc("2026-01-01T10:00:30"))
    env = {"max_retry_attempts": "3", "breaker_failures": "2", "breaker_open_for": "500ms"}
    async with cron(gateway, clock, **env) as connector:
        await clock.settle(1)
        await clock.advance_to(utc("2026-01-01T10:01:30"))
        await eventually(lambda: down.tried >= 2, 10, what="the failures that open it")
        await asyncio.sleep(1.0)  # the outage goes on past a probe
        tried_while_down = down.tried
        await down.up()
        await eventually(lambda: len(down.received) == 1, 10, what="the slot's call")
        await eventually(lambda: not connector.firer.tasks, 10, what="the slot done")
        state = sample(connector, "connector_function_breaker_state", function="down.openfaas-fn")
    # two failures opened it (the second used no attempt), then one probe per open period
    assert 3 <= tried_while_down <= 5, tried_while_down
    assert state == 0
