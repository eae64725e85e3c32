"""Several connectors in one group share the partitions and hand them over without loss."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import Call, FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector
from tests.support.ports import eventually

ASSIGNED = "kafka_connector_assigned_partitions"
RECEIVED = "connector_messages_received_total"


async def assigned(*connectors: RunningConnector) -> list[float]:
    return [await c.metric(ASSIGNED) for c in connectors]


def bodies(gateway: FakeGateway) -> set[bytes]:
    return {c.body for c in gateway.calls_to(FUNCTION)}


async def test_two_connectors_split_partitions_and_a_stopped_ones_move_to_the_other(
    gateway: FakeGateway, topic3: KafkaTopic, start_connector: StartConnector
) -> None:
    async def steady(call: Call) -> web.Response:
        await asyncio.sleep(0.01)
        return web.Response(text="ok")

    gateway.function(FUNCTION, steady)
    gateway.subscribe(FUNCTION, topic3.name)
    one = await start_connector(topic3)
    two = await start_connector(topic3)

    async def split() -> bool:
        counts = await assigned(one, two)
        return sum(counts) == 3 and min(counts) >= 1

    await eventually(split, 30, what="the partitions split between the two")
    first = [(f"k{i}".encode(), f"first-{i}".encode()) for i in range(90)]
    await topic3.send_many(first)
    await eventually(lambda: bodies(gateway) >= {v for _, v in first}, 30, what="first batch")
    topic = topic3.name
    assert await one.metric(RECEIVED, topic=topic) > 0
    assert await two.metric(RECEIVED, topic=topic) > 0

    assert await two.process.stop() == 0, two.process.output()
    await eventually(lambda: _owns_all(one), 30, what="the survivor to own every partition")
    second = [(f"k{i}".encode(), f"second-{i}".encode()) for i in range(90)]
    await topic3.send_many(second)
    await eventually(lambda: bodies(gateway) >= {v for _, v in second}, 30, what="second batch")
    await eventually(lambda: _nothing_uncommitted(topic3), 30, what="everything committed")
    assert await one.process.stop() == 0, one.process.output()


async def test_records_produced_during_a_handover_are_not_lost(
    gateway: FakeGateway, topic3: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic3.name)
    one = await start_connector(topic3)
    await eventually(lambda: _owns_all(one), 30, what="the first to own every partition")
    sent: set[bytes] = set()

    async def produce(prefix: str, count: int) -> None:
        for i in range(count):
            body = f"{prefix}-{i}".encode()
            await topic3.send(body, key=f"k{i}".encode())
            sent.add(body)
            await asyncio.sleep(0.01)

    producing = asyncio.create_task(produce("during", 200))
    two = await start_connector(topic3)  # a rebalance while records arrive
    await eventually(lambda: _owns_some(two), 30, what="the second to take partitions")
    assert await one.process.stop() == 0, one.process.output()  # and another one
    await producing
    await eventually(lambda: bodies(gateway) >= sent, 30, what="every record produced")
    await eventually(lambda: _nothing_uncommitted(topic3), 30, what="everything committed")
    assert await two.process.stop() == 0, two.process.output()


async def _owns_all(connector: RunningConnector) -> bool:
    return await connector.metric(ASSIGNED) == 3


async def _owns_some(connector: RunningConnector) -> bool:
    return await connector.metric(ASSIGNED) >= 1


async def _nothing_uncommitted(topic: KafkaTopic) -> bool:
    return await topic.uncommitted() == 0
