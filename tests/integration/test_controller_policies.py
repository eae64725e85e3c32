"""A function's retry annotations are read once per topic map, and a changed one counts."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from connectors.core.config import GatewaySettings, RetrySettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.controller import Controller, Event
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import Invoker
from connectors.core.retry import ANNOTATION_ATTEMPTS, RetryPolicy
from connectors.core.topicmap import TopicMapRefresher
from tests.support.http import FakeGateway


async def test_a_changed_retry_annotation_takes_effect_once_the_topic_map_is_rebuilt(
    gateway: FakeGateway,
) -> None:
    gateway.function("fn", lambda call: web.Response(status=503))
    gateway.subscribe("fn", "orders", **{ANNOTATION_ATTEMPTS: "1"})
    client = GatewayClient(GatewaySettings(gateway_url=gateway.url), max_inflight=4)
    topics = TopicMapRefresher(client, interval=60)
    settings = ConnectorSettings()
    controller = Controller(
        connector="test",
        settings=settings,
        invoker=Invoker(client),
        policy=RetryPolicy.from_settings(
            RetrySettings(max_retry_attempts=5, initial_retry_wait=0.001, max_retry_wait=0.001)
        ),
        topics=topics,
        metrics=ConnectorMetrics(CollectorRegistry(), settings.max_inflight),
    )
    try:
        assert await topics.refresh()
        (first,) = await controller.dispatch(Event("orders", b"x"))
        assert not first.ok
        assert len(gateway.calls_to("fn")) == 1

        gateway.subscribe("fn", "orders", **{ANNOTATION_ATTEMPTS: "3"})
        assert await topics.refresh()
        (second,) = await controller.dispatch(Event("orders", b"x"))
        assert not second.ok
        assert second.result.attempt == 3
        assert len(gateway.calls_to("fn")) == 1 + 3
    finally:
        await client.close()
