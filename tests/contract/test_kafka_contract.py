"""The source contract held by the Kafka connector against a real tansu broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.contract.base import FUNCTION, SourceContract, SourceHarness
from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic, TansuBroker
from tests.support.procs import FerryProcess


class KafkaHarness(SourceHarness):
    def __init__(self, gateway: FakeGateway, topic: KafkaTopic) -> None:
        super().__init__(gateway)
        self.kafka = topic
        self.topic = topic.name
        gateway.subscribe(FUNCTION, topic.name)

    async def send(self, body: bytes) -> None:
        await self.kafka.send(body)

    def process(self, **env: str) -> FerryProcess:
        return FerryProcess("kafka-connector", {**self.base_env(), **self.kafka.env(**env)})

    async def unfinished(self) -> int:
        return await self.kafka.uncommitted()

    async def dead_letters(self) -> list[bytes]:
        return [value for value, _ in await self.kafka.read(self.kafka.dead_letter)]


class TestKafkaContract(SourceContract):
    @pytest.fixture
    async def harness(
        self, gateway: FakeGateway, tansu: TansuBroker
    ) -> AsyncIterator[SourceHarness]:
        topic = await KafkaTopic(tansu).create()
        harness = KafkaHarness(gateway, topic)
        yield harness
        await harness.close()
        await topic.close()
