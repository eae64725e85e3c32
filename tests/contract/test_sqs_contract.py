"""The source contract held by the SQS connector against a real moto_server.

Failed messages go to an explicit `dead_letter_queue_url` here; the redrive-policy path has its
own tests. A 2s visibility timeout makes a crashed connector's messages come back in the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.contract.base import FUNCTION, SourceContract, SourceHarness
from tests.support.http import FakeGateway
from tests.support.moto import MotoServer, Queues
from tests.support.procs import FerryProcess


def sqs_env(moto: MotoServer, gateway: FakeGateway, queue_url: str, **env: str) -> dict[str, str]:
    return {
        "gateway_url": gateway.url,
        "health_port": "0",
        "health_host": "127.0.0.1",
        "endpoint_url": moto.url,
        "queue_url": queue_url,
        "visibility_timeout": "2s",
        "wait_time": "1s",
        "initial_retry_wait": "20ms",
        "max_retry_wait": "100ms",
        "max_retry_attempts": "5",
        "rebuild_interval": "1s",
        "graceful_timeout": "15s",
        **env,
    }


class SqsHarness(SourceHarness):
    def __init__(self, gateway: FakeGateway, moto: MotoServer, queues: Queues) -> None:
        super().__init__(gateway)
        self.moto = moto
        self.queues = queues
        self.url = ""
        self.dead_url = ""

    async def setup(self) -> SqsHarness:
        self.url = await self.queues.create("contract")
        self.dead_url = await self.queues.create("contract-dead")
        self.topic = self.url.rsplit("/", 1)[-1]
        self.gateway.subscribe(FUNCTION, self.topic)
        return self

    async def send(self, body: bytes) -> None:
        await self.queues.send(self.url, body.decode())

    def process(self, **env: str) -> FerryProcess:
        return FerryProcess(
            "sqs-connector",
            sqs_env(self.moto, self.gateway, self.url, dead_letter_queue_url=self.dead_url, **env),
        )

    async def unfinished(self) -> int:
        return await self.queues.depth(self.url)

    async def dead_letters(self) -> list[bytes]:
        found: list[dict[str, Any]] = await self.queues.peek(self.dead_url)
        return [m["Body"].encode() for m in found]


class TestSqsContract(SourceContract):
    @pytest.fixture
    async def harness(
        self, gateway: FakeGateway, moto_server: MotoServer
    ) -> AsyncIterator[SourceHarness]:
        async with moto_server.sqs() as client:
            harness = await SqsHarness(gateway, moto_server, Queues(client, "contract")).setup()
            yield harness
            await harness.close()
