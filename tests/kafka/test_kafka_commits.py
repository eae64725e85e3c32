"""Commits never pass unfinished work; what was not committed is invoked again after a crash."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from tests.kafka.conftest import FUNCTION, Gate, StartConnector
from tests.support.http import Call, FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector
from tests.support.ports import eventually

BLOCKED = 3
RECORDS = 10


def offsets_of(calls: list[Call]) -> list[int]:
    return sorted(int(c.headers["X-Kafka-Offset"]) for c in calls)


@pytest.mark.parametrize("ordering", ["key", "none"])
async def test_a_slow_record_holds_the_commit_and_is_invoked_again_after_kill_9(
    gateway: FakeGateway,
    topic: KafkaTopic,
    start_connector: StartConnector,
    gate: Gate,
    ordering: str,
) -> None:
    never = gate()

    async def sleeps_on_one(call: Call) -> web.Response:
        if call.body == f"record-{BLOCKED}".encode():
            await never.wait()
        return web.Response(text="ok")

    gateway.function(FUNCTION, sleeps_on_one)
    gateway.subscribe(FUNCTION, topic.name)
    for i in range(RECORDS):
        await topic.send(f"record-{i}".encode(), key=f"key-{i}".encode())

    first = await start_connector(topic, ordering=ordering)
    # every record but the sleeping one finishes; the commit stops in front of it
    await eventually(lambda: len(gateway.calls_to(FUNCTION)) == RECORDS, 30, what="all started")
    await eventually(lambda: _committed_is(topic, BLOCKED), 30, what="commit up to the sleeper")
    await asyncio.sleep(1.0)  # several commit intervals while it still sleeps
    assert (await topic.committed())[0] == BLOCKED

    await first.process.kill()
    before = len(gateway.calls)
    gateway.function(FUNCTION)  # the function answers at once from now on
    second = await start_connector(topic, ordering=ordering)
    await eventually(lambda: _committed_is(topic, RECORDS), 30, what="everything committed")
    again = gateway.calls_to(FUNCTION)[before:]
    assert offsets_of(again) == list(range(BLOCKED, RECORDS))
    assert await second.process.stop() == 0, second.process.output()


async def _committed_is(topic: KafkaTopic, offset: int) -> bool:
    return (await topic.committed())[0] == offset


async def _lag_is(connector: RunningConnector, labels: dict[str, str], value: int) -> bool:
    return await connector.metric("connector_consumer_lag", **labels) == value


async def test_back_pressure_pauses_a_partition_holding_max_uncommitted_records_and_lag_shows_it(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector, gate: Gate
) -> None:
    release = gate()

    async def first_one_waits(call: Call) -> web.Response:
        if call.headers["X-Kafka-Offset"] == "0":
            await release.wait()
        return web.Response(text="ok")

    gateway.function(FUNCTION, first_one_waits)
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send_many([(None, f"r{i}".encode()) for i in range(40)])
    connector = await start_connector(topic, ordering="none", max_uncommitted="5")
    await eventually(lambda: len(gateway.calls_to(FUNCTION)) >= 5, 30, what="the buffer to fill")
    await asyncio.sleep(1.5)
    assert len(gateway.calls_to(FUNCTION)) == 5
    assert await connector.metric("kafka_connector_paused_partitions") == 1
    lag = {"source": f"{topic.name}/0"}
    await eventually(lambda: _lag_is(connector, lag, 40), 10, what="lag of the whole backlog")
    release.set()
    await eventually(lambda: len(gateway.calls_to(FUNCTION)) == 40, 30, what="the rest")
    await eventually(lambda: _committed_is(topic, 40), 30, what="everything committed")
    await eventually(lambda: _lag_is(connector, lag, 0), 10, what="no lag")
    assert await connector.process.stop() == 0, connector.process.output()
