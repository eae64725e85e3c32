"""Ordering modes: Kafka's order is kept where it is promised, work runs in parallel elsewhere."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiohttp import web

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import Call, FakeGateway
from tests.support.kafka import KafkaTopic
from tests.support.ports import eventually

RECORDS = 1000
KEYS = 50


def keyed_records() -> list[tuple[bytes | None, bytes]]:
    return [(f"key-{i % KEYS}".encode(), f"key-{i % KEYS}:{i}".encode()) for i in range(RECORDS)]


async def run_to_the_end(
    gateway: FakeGateway, topic: KafkaTopic, start: StartConnector, ordering: str
) -> list[Call]:
    async def brief(call: Call) -> web.Response:
        await asyncio.sleep(0.002)
        return web.Response(text="ok")

    gateway.function(FUNCTION, brief)
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send_many(keyed_records())
    connector = await start(topic, ordering=ordering, max_inflight="32")
    await eventually(lambda: len(gateway.calls_to(FUNCTION)) >= RECORDS, 90, what="every record")
    await eventually(lambda: _committed_all(topic), 30, what="every offset committed")
    assert await connector.process.stop() == 0, connector.process.output()
    return gateway.calls_to(FUNCTION)


async def _committed_all(topic: KafkaTopic) -> bool:
    return await topic.uncommitted() == 0


async def test_partition_ordering_invokes_each_partition_in_produce_order(
    gateway: FakeGateway, topic3: KafkaTopic, start_connector: StartConnector
) -> None:
    calls = await run_to_the_end(gateway, topic3, start_connector, "partition")
    offsets: dict[str, list[int]] = defaultdict(list)
    for call in calls:
        offsets[call.headers["X-Kafka-Partition"]].append(int(call.headers["X-Kafka-Offset"]))
    ends = await topic3.end_offsets()
    assert len(offsets) == 3
    for partition, seen in offsets.items():
        assert seen == list(range(ends[int(partition)]))
    assert gateway.peak <= 3  # one call at a time per partition


async def test_key_ordering_keeps_each_key_in_order_and_runs_keys_in_parallel(
    gateway: FakeGateway, topic3: KafkaTopic, start_connector: StartConnector
) -> None:
    calls = await run_to_the_end(gateway, topic3, start_connector, "key")
    sequence: dict[str, list[int]] = defaultdict(list)
    for call in calls:
        key, _, number = call.body.decode().partition(":")
        assert call.headers["X-Kafka-Key"] == key
        sequence[key].append(int(number))
    assert len(sequence) == KEYS
    for key, numbers in sequence.items():
        assert numbers == sorted(numbers), key
        assert len(numbers) == RECORDS // KEYS
    assert gateway.peak > 3  # more calls at once than there are partitions
