"""The per-function limiter in the Kafka connector: a function answering 429 past its capacity
is slowed down to it, not retried to exhaustion, and each key's order is kept."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from aiohttp import web

from connectors.core.function_limits import MAX_FREE_RETURNS
from tests.kafka.conftest import FUNCTION, Gate, StartConnector
from tests.support.capacity import CapacityFunction, always_refusing
from tests.support.http import FakeGateway, held_until
from tests.support.kafka import KafkaTopic, RunningConnector, TansuBroker
from tests.support.ports import eventually

RECORDS = 200
KEYS = 10
CAPACITY = 2


async def test_a_function_answering_429_past_its_capacity_gets_every_record_in_key_order(
    gateway: FakeGateway, topic3: KafkaTopic, start_connector: StartConnector
) -> None:
    function = CapacityFunction(CAPACITY, seconds=0.01, settle=20)
    gateway.function(FUNCTION, function.handler())
    gateway.subscribe(FUNCTION, topic3.name)
    await topic3.send_many(
        [(f"key-{i % KEYS}".encode(), f"key-{i % KEYS}:{i}".encode()) for i in range(RECORDS)]
    )
    connector = await start_connector(topic3, ordering="key", max_inflight="32")
    await eventually(lambda: len(function.accepted) >= RECORDS, 90, what="every record")
    await eventually(lambda: _committed_all(topic3), 30, what="every offset committed")
    throttled = await connector.metric("connector_function_throttled_total")
    limit = await connector.metric("connector_function_limit", function=f"{FUNCTION}.openfaas-fn")
    assert await connector.process.stop() == 0, connector.process.output()

    assert await topic3.read(topic3.dead_letter, timeout=2) == []
    by_key: dict[str, list[int]] = defaultdict(list)
    for call in function.accepted:
        key, _, number = call.body.decode().partition(":")
        by_key[key].append(int(number))
    assert sorted(n for numbers in by_key.values() for n in numbers) == list(range(RECORDS))
    for key, numbers in by_key.items():
        assert numbers == sorted(numbers), key
    every_call: dict[str, list[int]] = defaultdict(list)  # refused ones too
    for call in gateway.calls_to(FUNCTION):
        key, _, number = call.body.decode().partition(":")
        every_call[key].append(int(number))
    for key, numbers in every_call.items():
        assert numbers == sorted(numbers), f"a later record of {key} overtook a refused one"
    assert function.refused <= 0.25 * RECORDS, function.refused
    # the limit starts at max_inflight; once it has found the capacity, it stays near it
    assert function.peak_arriving <= CAPACITY + 2, function.peak_arriving
    assert throttled == function.refused
    assert 1 <= limit <= CAPACITY + 1


async def test_a_function_that_always_answers_429_still_ends_in_a_dead_letter(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION, always_refusing())
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(b"doomed", key=b"k")
    connector = await start_connector(topic, max_retry_attempts="3")
    (letter,) = await eventually(
        lambda: topic.read(topic.dead_letter, timeout=1), 60, what="the dead letter"
    )
    await eventually(lambda: _committed_all(topic), 30, what="the offset committed")
    assert await connector.process.stop() == 0, connector.process.output()
    assert letter[0] == b"doomed"
    # the limiter's free returns (no attempt used), then three counted attempts: bounded
    assert len(gateway.calls_to(FUNCTION)) == MAX_FREE_RETURNS + 3


async def test_sigterm_starts_no_record_waiting_for_its_functions_limit(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector, gate: Gate
) -> None:
    release = gate()
    gateway.function(FUNCTION, held_until(release))
    gateway.subscribe(FUNCTION, topic.name, **{"ferry.max_inflight": "1"})
    for number in range(4):
        await topic.send(b"%d" % number)
    connector = await start_connector(topic, ordering="none", graceful_timeout="30s")
    qualified = f"{FUNCTION}.openfaas-fn"
    await eventually(
        lambda: _metric_is(connector, "connector_function_waiting", 3, function=qualified),
        30,
        what="one record running, three waiting for the function's cap",
    )
    stopped = asyncio.create_task(connector.process.stop(timeout=30))
    await eventually(lambda: _not_ready(connector), 10, what="the drain under way")
    release.set()
    assert await stopped == 0, connector.process.output()
    assert [c.body for c in gateway.calls_to(FUNCTION)] == [b"0"]
    assert (await topic.committed())[0] == 1  # the waiting records stay uncommitted


async def _metric_is(connector: RunningConnector, name: str, value: float, **labels: str) -> bool:
    return await connector.metric(name, **labels) == value


async def _not_ready(connector: RunningConnector) -> bool:
    return not await connector.ready()


async def _committed_all(topic: KafkaTopic) -> bool:
    return await topic.uncommitted() == 0


async def test_records_waiting_for_one_functions_cap_leave_room_for_other_functions(
    gateway: FakeGateway,
    topic: KafkaTopic,
    tansu: TansuBroker,
    start_connector: StartConnector,
    gate: Gate,
) -> None:
    other = await KafkaTopic(tansu).create()
    other.group = topic.group  # the connector's group reads both topics
    try:
        release = gate()
        gateway.function(FUNCTION, held_until(release))
        gateway.subscribe(FUNCTION, topic.name, **{"ferry.max_inflight": "1"})
        gateway.function("quick")
        gateway.subscribe("quick", other.name)
        for number in range(4):
            await topic.send(b"%d" % number)
        connector = await start_connector(
            topic, topics=f"{topic.name},{other.name}", ordering="none", max_inflight="2"
        )
        qualified = f"{FUNCTION}.openfaas-fn"
        await eventually(
            lambda: _metric_is(connector, "connector_function_waiting", 3, function=qualified),
            30,
            what="one record running, three waiting for the function's cap",
        )
        # both of the connector's places were taken by that function's records; the quick
        # function's records run anyway, while the capped one is still held
        for number in range(5):
            await other.send(b"q%d" % number)
        await eventually(lambda: len(gateway.calls_to("quick")) == 5, 30, what="quick's records")
        assert [c.body for c in gateway.calls_to(FUNCTION)] == [b"0"]
        release.set()
        await eventually(lambda: len(gateway.calls_to(FUNCTION)) == 4, 30, what="the rest")
        await eventually(lambda: _committed_all(topic), 30, what="every offset committed")
        await eventually(lambda: _committed_all(other), 30, what="every quick offset committed")
        assert await connector.process.stop() == 0, connector.process.output()
    finally:
        await other.close()


async def test_a_record_waiting_out_its_retry_back_off_leaves_room_for_other_functions(
    gateway: FakeGateway, topic: KafkaTopic, tansu: TansuBroker, start_connector: StartConnector
) -> None:
    other = await KafkaTopic(tansu).create()
    other.group = topic.group  # the connector's group reads both topics
    try:
        answers = iter([web.Response(status=500, headers={"Retry-After": "6"})])
        gateway.function(FUNCTION, lambda call: next(answers, web.Response(status=200)))
        gateway.subscribe(FUNCTION, topic.name)
        gateway.function("quick")
        gateway.subscribe("quick", other.name)
        await topic.send(b"failing-once")
        connector = await start_connector(
            topic,
            topics=f"{topic.name},{other.name}",
            ordering="none",
            max_inflight="1",
        )
        await eventually(lambda: gateway.calls_to(FUNCTION), 30, what="the first attempt")
        for number in range(3):
            await other.send(b"q%d" % number)
        await eventually(lambda: len(gateway.calls_to(FUNCTION)) == 2, 30, what="the retry")
        await eventually(lambda: len(gateway.calls_to("quick")) == 3, 30, what="quick's records")
        # the only place was the failing record's; the quick records ran during its back-off
        # (at least the 6 s its Retry-After asked for)
        order = [call.function.split(".", 1)[0] for call in gateway.calls]
        assert order == [FUNCTION, "quick", "quick", "quick", FUNCTION], order
        await eventually(lambda: _committed_all(topic), 30, what="its offset committed")
        await eventually(lambda: _committed_all(other), 30, what="the quick offsets committed")
        assert await connector.process.stop() == 0, connector.process.output()
    finally:
        await other.close()
