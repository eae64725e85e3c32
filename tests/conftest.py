"""Session-wide real brokers and per-test HTTP servers."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client as NatsClient

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


@pytest.fixture(scope="session", autouse=True)
async def _no_nats_client_outlives_the_session() -> AsyncIterator[None]:
    """A NATS client a test forgot to close, whose server is gone, reconnects for ever, and
    nats-py's reconnect task does not end when the session's event loop cancels it: the loop's
    teardown would then hang until pytest-timeout. Close what is left, and say how many."""
    yield
    left = [o for o in gc.get_objects() if isinstance(o, NatsClient) and not o.is_closed]
    for client in left:
        closing = asyncio.ensure_future(client.close())
        await asyncio.wait({closing}, timeout=5)  # never raises, whatever close() does
        if closing.done() and not closing.cancelled():
            closing.exception()  # retrieved, so it is not reported as never retrieved
    if left:
        print(f"\n{len(left)} NATS client(s) left open by tests closed at the end", file=sys.stderr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Captured output and logs with a lone surrogate (the hostile-name tests log such names)
    escaped: a report is sent between processes as UTF-8 when the tests run in parallel, and
    one that cannot be encoded stops that process's share of the run."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    report.sections = [
        (name, text.encode("utf-8", "backslashreplace").decode("utf-8"))
        for name, text in report.sections
    ]
