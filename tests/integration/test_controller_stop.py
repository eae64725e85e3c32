"""Stopping a connector cuts retry back-offs short instead of waiting them out, and starts no
call that was still waiting for a free `max_inflight` slot."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from connectors.core.config import RetrySettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.delivery import Abandoned, Event, NotStarted
from tests.support.controller import controller_for
from tests.support.http import FakeGateway, held_until
from tests.support.ports import eventually


async def test_stop_during_a_back_off_abandons_the_event_at_once(gateway: FakeGateway) -> None:
    gateway.function("fn", lambda call: web.Response(status=503))
    gateway.subscribe("fn", "orders")
    long_waits = RetrySettings(initial_retry_wait=3600, max_retry_wait=3600)
    async with controller_for(gateway, long_waits) as under_test:
        controller = under_test.controller
        dispatching = asyncio.create_task(controller.dispatch(Event("orders", b"x")))

        def retrying() -> float:
            sample = {"function": "fn.openfaas-fn"}
            return under_test.registry.get_sample_value("connector_retries_total", sample) or 0

        # the retry is counted as the attempt ends, just before the back-off begins
        await eventually(retrying, 10, what="the first attempt, to be retried")
        assert not dispatching.done()  # waiting out the hour-long back-off
        stopped_at = time.monotonic()
        controller.stop()
        with pytest.raises(Abandoned):
            await asyncio.wait_for(dispatching, 5)
        assert time.monotonic() - stopped_at < 1  # at once, not after a back-off of an hour
        assert len(gateway.calls_to("fn")) == 1


async def test_stop_starts_no_call_still_waiting_for_a_free_slot(gateway: FakeGateway) -> None:
    release = asyncio.Event()
    gateway.function("fn", held_until(release))
    gateway.subscribe("fn", "orders")
    async with controller_for(gateway, settings=ConnectorSettings(max_inflight=1)) as under_test:
        controller = under_test.controller
        first = asyncio.create_task(controller.dispatch(Event("orders", b"first")))
        await eventually(lambda: gateway.calls_to("fn"), 10, what="the first call")
        # waits for the only slot, which the first call holds until after the stop
        queued = asyncio.create_task(controller.dispatch(Event("orders", b"queued")))
        await asyncio.sleep(0)
        controller.stop()
        release.set()  # the slot comes free after the stop
        (delivery,) = await asyncio.wait_for(first, 10)
        assert delivery.ok  # a call already running finishes normally
        with pytest.raises(NotStarted):
            await asyncio.wait_for(queued, 10)
    assert [c.body for c in gateway.calls_to("fn")] == [b"first"]
