"""Stopping a connector cuts retry back-offs short instead of waiting them out."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from connectors.core.config import RetrySettings
from connectors.core.controller import Abandoned, Event
from tests.support.controller import controller_for
from tests.support.http import FakeGateway
from tests.support.ports import eventually


async def test_stop_during_a_back_off_abandons_the_event_at_once(gateway: FakeGateway) -> None:
    gateway.function("fn", lambda call: web.Response(status=503))
    gateway.subscribe("fn", "orders")
    long_waits = RetrySettings(initial_retry_wait=3600, max_retry_wait=3600)
    async with controller_for(gateway, long_waits) as under_test:
        controller = under_test.controller
        dispatching = asyncio.create_task(controller.dispatch(Event("orders", b"x")))
        await eventually(lambda: gateway.calls_to("fn"), 10, what="the first attempt")
        await asyncio.sleep(0.1)
        assert not dispatching.done()  # waiting out the back-off
        controller.stop()
        with pytest.raises(Abandoned):
            await asyncio.wait_for(dispatching, 5)
        assert len(gateway.calls_to("fn")) == 1
