"""The circuit breaker in the Kafka connector: while a function is down (connection refused
behind the gateway, which answers 502) its records wait in their lanes, unattempted, and after
it is up again every one is delivered once, in order per key, with no dead letter."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector
from tests.support.outage import DownFunction
from tests.support.ports import eventually

RECORDS = 50
KEYS = 5
OUTAGE = 2.5  # seconds the function stays down once its breaker has opened


@pytest.fixture
async def down() -> AsyncIterator[DownFunction]:
    function = DownFunction()
    yield function
    await function.close()


async def test_a_function_down_for_a_while_gets_every_record_in_key_order_and_none_dead(
    gateway: FakeGateway,
    topic3: KafkaTopic,
    start_connector: StartConnector,
    down: DownFunction,
) -> None:
    gateway.function(FUNCTION, down.handler())
    gateway.subscribe(FUNCTION, topic3.name)
    await topic3.send_many(
        [(f"key-{i % KEYS}".encode(), f"key-{i % KEYS}:{i}".encode()) for i in range(RECORDS)]
    )
    connector = await start_connector(
        topic3, ordering="key", max_retry_attempts="3", breaker_open_for="1s"
    )
    qualified = f"{FUNCTION}.openfaas-fn"
    await eventually(lambda: _breaker_is(connector, qualified, 2), 30, what="the breaker open")
    await asyncio.sleep(OUTAGE)  # the outage goes on
    tried_while_down = down.tried
    await down.up()
    await eventually(lambda: len(down.received) >= RECORDS, 30, what="every record")
    await eventually(lambda: _committed_all(topic3), 30, what="every offset committed")
    assert await _breaker_is(connector, qualified, 0)
    assert await connector.process.stop() == 0, connector.process.output()

    assert await topic3.read(topic3.dead_letter, timeout=2) == []
    by_key: dict[str, list[int]] = defaultdict(list)
    for body in down.received:
        key, _, number = body.decode().partition(":")
        by_key[key].append(int(number))
    assert sorted(n for numbers in by_key.values() for n in numbers) == list(range(RECORDS))
    for key, numbers in by_key.items():
        assert numbers == sorted(numbers), key
    # five failures open it, then one probe per open period (1s, then 2s): a handful
    assert tried_while_down <= 12, tried_while_down


async def _breaker_is(connector: RunningConnector, function: str, state: int) -> bool:
    return await connector.metric("connector_function_breaker_state", function=function) == state


async def _committed_all(topic: KafkaTopic) -> bool:
    return await topic.uncommitted() == 0
