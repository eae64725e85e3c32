"""Per-test Kafka topics on the session's tansu broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.kafka import KafkaTopic, TansuBroker


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
