"""A connector controller wired to a FakeGateway, for tests of the controller itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from connectors.core.config import GatewaySettings, RetrySettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.controller import Controller
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import Invoker
from connectors.core.retry import RetryPolicy
from connectors.core.topicmap import TopicMapRefresher
from tests.support.http import FakeGateway


@dataclass
class ControllerUnderTest:
    controller: Controller
    topics: TopicMapRefresher
    registry: CollectorRegistry


@asynccontextmanager
async def controller_for(
    gateway: FakeGateway,
    retry: RetrySettings | None = None,
    print_request_body: bool = False,
    settings: ConnectorSettings | None = None,
) -> AsyncIterator[ControllerUnderTest]:
    """A controller reading `gateway`'s topic map (refreshed once before it is handed out)."""
    client = GatewayClient(
        GatewaySettings(gateway_url=gateway.url, print_request_body=print_request_body),
        max_inflight=4,
    )
    topics = TopicMapRefresher(client, interval=60)
    settings = settings or ConnectorSettings()
    registry = CollectorRegistry()
    controller = Controller(
        connector="test",
        settings=settings,
        invoker=Invoker(client),
        policy=RetryPolicy.from_settings(retry or RetrySettings()),
        topics=topics,
        metrics=ConnectorMetrics(registry, settings.max_inflight),
    )
    try:
        assert await topics.refresh()
        yield ControllerUnderTest(controller, topics, registry)
    finally:
        await client.close()
