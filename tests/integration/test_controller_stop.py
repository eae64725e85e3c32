"""Stopping a connector cuts retry back-offs short instead of waiting them out."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from connectors.core.config import GatewaySettings, RetrySettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.controller import Abandoned, Controller, Event
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import Invoker
from connectors.core.retry import RetryPolicy
from connectors.core.topicmap import TopicMapRefresher
from tests.support.http import FakeGateway
from tests.support.ports import eventually


async def test_stop_during_a_back_off_abandons_the_event_at_once(gateway: FakeGateway) -> None:
    gateway.function("fn", lambda call: web.Response(status=503))
    gateway.subscribe("fn", "orders")
    client = GatewayClient(GatewaySettings(gateway_url=gateway.url), max_inflight=4)
    topics = TopicMapRefresher(client, interval=60)
    settings = ConnectorSettings()
    controller = Controller(
        connector="test",
        settings=settings,
        invoker=Invoker(client),
        policy=RetryPolicy.from_settings(
            RetrySettings(initial_retry_wait=3600, max_retry_wait=3600)
        ),
        topics=topics,
        metrics=ConnectorMetrics(CollectorRegistry(), settings.max_inflight),
    )
    try:
        assert await topics.refresh()
        dispatching = asyncio.create_task(controller.dispatch(Event("orders", b"x")))
        await eventually(lambda: gateway.calls_to("fn"), 10, what="the first attempt")
        await asyncio.sleep(0.1)
        assert not dispatching.done()  # waiting out the back-off
        controller.stop()
        with pytest.raises(Abandoned):
            await asyncio.wait_for(dispatching, 5)
        assert len(gateway.calls_to("fn")) == 1
    finally:
        await client.close()
