"""The source contract held by the queue worker against a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asyncq.codec import decode
from tests.contract.base import FUNCTION, SourceContract, SourceHarness
from tests.support.http import FakeGateway
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest


class JetStreamHarness(SourceHarness):
    def __init__(self, gateway: FakeGateway, queue: QueueUnderTest) -> None:
        super().__init__(gateway)
        self.queue = queue

    async def send(self, body: bytes) -> None:
        await self.queue.publish(FUNCTION, body)

    def process(self, **env: str) -> FerryProcess:
        # a short ack_wait so a crashed worker's messages come back within the test
        env = {**self.base_env(), "ack_wait": "2s", **env}
        return FerryProcess("queue-worker", self.queue.env(**env))

    async def unfinished(self) -> int:
        return await self.queue.pending()

    async def dead_letters(self) -> list[bytes]:
        return [decode(d.data).body for d in await self.queue.dead_letters()]


class TestJetStreamContract(SourceContract):
    @pytest.fixture
    async def harness(
        self, gateway: FakeGateway, queue: QueueUnderTest
    ) -> AsyncIterator[SourceHarness]:
        harness = JetStreamHarness(gateway, queue)
        yield harness
        await harness.close()
