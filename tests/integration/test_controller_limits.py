"""The controller's per-function limits: a cap, a pause on Retry-After, the off switch, and a
stop while calls wait for room."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from connectors.core.config import RetrySettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.delivery import Event, NotStarted
from connectors.core.function_limits import MAX_INFLIGHT_ANNOTATION
from tests.support.capacity import CapacityFunction, always_refusing
from tests.support.controller import controller_for
from tests.support.http import Call, FakeGateway, held_until
from tests.support.ports import eventually

QUICK = RetrySettings(max_retry_attempts=3, initial_retry_wait=0.001, max_retry_wait=0.005)


async def test_ferry_max_inflight_caps_a_function_and_others_keep_flowing(
    gateway: FakeGateway,
) -> None:
    capped = CapacityFunction(capacity=100, seconds=0.05)
    gateway.function("capped", capped.handler())
    gateway.function("free")
    gateway.subscribe("capped", "orders", **{MAX_INFLIGHT_ANNOTATION: "2"})
    gateway.subscribe("free", "audits")
    async with controller_for(gateway, QUICK) as under_test:
        controller = under_test.controller
        backlog = [
            asyncio.create_task(controller.dispatch(Event("orders", b"x"))) for _ in range(8)
        ]
        await eventually(lambda: capped.running == 2, 5, what="two capped calls running")
        (audit,) = await controller.dispatch(Event("audits", b"y"))
        assert audit.ok
        assert sum(not task.done() for task in backlog) >= 5  # the cap's backlog was not in its way
        deliveries = [d for task in backlog for d in await task]
    assert all(d.ok for d in deliveries)
    assert capped.peak == 2


async def test_retry_after_pauses_that_function_without_using_an_attempt(
    gateway: FakeGateway,
) -> None:
    answered: list[float] = []

    async def busy_once(call: Call) -> web.Response:
        answered.append(asyncio.get_running_loop().time())
        if len(answered) == 1:
            return web.Response(status=503, headers={"Retry-After": "1"})
        return web.Response(text="ok")

    gateway.function("busy", busy_once)
    gateway.function("other")
    gateway.subscribe("busy", "orders")
    gateway.subscribe("other", "audits")
    async with controller_for(gateway, QUICK) as under_test:
        controller = under_test.controller
        paused = asyncio.create_task(controller.dispatch(Event("orders", b"x")))
        await eventually(lambda: answered, 5, what="the first answer")
        (audit,) = await controller.dispatch(Event("audits", b"y"))
        assert audit.ok and len(answered) == 1  # the other function did not wait for the pause
        (delivery,) = await paused
    assert delivery.ok
    assert delivery.result.attempt == 1  # sent back by the limiter, not a failed attempt
    assert answered[1] - answered[0] >= 0.9


async def test_with_the_limiter_off_a_429_is_an_attempt_like_any_other(
    gateway: FakeGateway,
) -> None:
    gateway.function("fn", always_refusing())
    gateway.subscribe("fn", "orders")
    settings = ConnectorSettings(limiter_enabled=False)
    async with controller_for(gateway, QUICK, settings=settings) as under_test:
        (delivery,) = await under_test.controller.dispatch(Event("orders", b"x"))
    assert not delivery.ok
    assert len(gateway.calls_to("fn")) == 3


async def test_a_call_waiting_for_room_is_not_started_once_the_controller_stops(
    gateway: FakeGateway,
) -> None:
    release = asyncio.Event()
    gateway.function("fn", held_until(release))
    gateway.subscribe("fn", "orders", **{MAX_INFLIGHT_ANNOTATION: "1"})
    async with controller_for(gateway, QUICK) as under_test:
        controller = under_test.controller
        running = asyncio.create_task(controller.dispatch(Event("orders", b"1")))
        await eventually(lambda: gateway.calls_to("fn"), 5, what="the first call")
        waiting = asyncio.create_task(controller.dispatch(Event("orders", b"2")))
        await eventually(
            lambda: len(controller.limits.entry("fn.openfaas-fn", 1).waiters) == 1,
            5,
            what="the second call in line",
        )
        controller.stop()
        with pytest.raises(NotStarted):
            await waiting
        release.set()
        (first,) = await running
    assert first.ok
    assert [c.body for c in gateway.calls_to("fn")] == [b"1"]
