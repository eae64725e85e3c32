"""Session-wide real brokers and per-test HTTP servers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.brokers import NatsServer
from tests.support.http import CallbackReceiver, FakeGateway
from tests.support.kafka import TansuBroker
from tests.support.moto import moto_server  # noqa: F401  (session fixture)
from tests.support.queue import QueueUnderTest, queue_on

os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    broker = TansuBroker().start()
    yield broker
    broker.stop()


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    gw = await FakeGateway().start()
    yield gw
    await gw.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    rx = await CallbackReceiver().start()
    yield rx
    await rx.stop()


@pytest.fixture
async def queue(nats_server: NatsServer, gateway: FakeGateway) -> AsyncIterator[QueueUnderTest]:
    async with queue_on(nats_server.url, gateway.url) as q:
        yield q
