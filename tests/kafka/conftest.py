"""Per-test Kafka topics on the session's tansu broker, and connector processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector, TansuBroker

FUNCTION = "fn"

StartConnector = Callable[..., Coroutine[Any, Any, RunningConnector]]
Gate = Callable[[], asyncio.Event]


@pytest.fixture
async def topic(tansu: TansuBroker) -> AsyncIterator[KafkaTopic]:
    created = await KafkaTopic(tansu).create()
    yield created
    await created.close()


@pytest.fixture
async def topic3(tansu: TansuBroker) -> AsyncIterator[KafkaTopic]:
    created = await KafkaTopic(tansu, partitions=3).create()
    yield created
    await created.close()


def connector_env(gateway: FakeGateway, topic: KafkaTopic, **env: str) -> dict[str, str]:
    base = {
        "gateway_url": gateway.url,
        "initial_retry_wait": "20ms",
        "max_retry_wait": "100ms",
        "max_retry_attempts": "3",
        "rebuild_interval": "500ms",
        "graceful_timeout": "15s",
        "print_response": "false",
    }
    return {**base, **topic.env(**env)}


@pytest.fixture
async def start_connector(gateway: FakeGateway) -> AsyncIterator[StartConnector]:
    """Start `ferry kafka-connector` processes for a topic; all are killed at the end."""
    running: list[RunningConnector] = []

    async def start(topic: KafkaTopic, **env: str) -> RunningConnector:
        connector = await RunningConnector(connector_env(gateway, topic, **env)).start()
        running.append(connector)
        return connector

    yield start
    for connector in running:
        await connector.process.close()


@pytest.fixture
async def gate(gateway: FakeGateway) -> AsyncIterator[Gate]:
    """Events that hold function calls; all are opened at the end of the test (also when it
    fails), so the gateway can shut down without waiting for held handlers."""
    made: list[asyncio.Event] = []

    def make() -> asyncio.Event:
        made.append(asyncio.Event())
        return made[-1]

    yield make
    for event in made:
        event.set()
