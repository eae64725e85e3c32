"""The Kafka connector as a process against hostile input: malformed gateway entries,
duplicate entries, oversized failing records, header bytes and nulls."""

from __future__ import annotations

from aiohttp import web

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import Call, FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector
from tests.support.ports import eventually


async def _committed(topic: KafkaTopic, offset: int) -> bool:
    return (await topic.committed())[0] == offset


async def _metric_is(connector: RunningConnector, name: str, value: float) -> bool:
    return await connector.metric(name) == value


async def test_malformed_gateway_entries_at_start_up_and_later_are_skipped_and_counted(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.function("late")
    gateway.subscribe(FUNCTION, topic.name)
    gateway.raw_entries = [{"name": "bad", "annotations": ["topic"]}]
    connector = await start_connector(topic)
    await topic.send(b"one")
    await eventually(lambda: gateway.calls_to(FUNCTION), 30, what="the first call")

    gateway.raw_entries += [
        {"name": "worse", "annotations": 3, "labels": ["x"]},
        {"name": "odd", "namespace": None, "labels": "x"},
        {"name": "nons", "namespace": 7, "annotations": {"topic": topic.name}},
    ]
    gateway.subscribe("late", topic.name)
    await eventually(
        lambda: _metric_is(connector, "connector_topic_map_size", 2), 20, what="the new map"
    )
    await topic.send(b"two")
    await eventually(lambda: gateway.calls_to("late"), 30, what="the late subscriber's call")
    assert [c.body for c in gateway.calls_to(FUNCTION)] == [b"one", b"two"]
    assert [c.body for c in gateway.calls_to("late")] == [b"two"]
    assert not gateway.calls_to("nons")
    assert await connector.metric("connector_topic_map_skipped_entries") == 4
    assert connector.process.running
    assert await connector.process.stop() == 0, connector.process.output()
    output = connector.process.output()
    assert output.count("entry skipped: bad") == 1, output
    assert "Traceback" not in output


async def test_near_duplicate_entries_invoke_the_function_once_per_record(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    gateway.raw_entries = [
        {
            "name": FUNCTION,
            "namespace": "openfaas-fn",
            "annotations": {"topic": f"{topic.name},{topic.name}"},
            "labels": {"copy": "2"},
        },
        {"name": FUNCTION, "namespace": "openfaas-fn", "annotations": {"topic": topic.name}},
    ]
    await topic.send(b"once")
    await topic.send(b"after")
    connector = await start_connector(topic)
    await eventually(lambda: _committed(topic, 2), 30, what="both records committed")
    assert [c.body for c in gateway.calls_to(FUNCTION)] == [b"once", b"after"]
    assert await connector.metric("connector_topic_map_size") == 1
    assert await connector.process.stop() == 0, connector.process.output()


def _fails_when_large(call: Call) -> web.Response:
    if len(call.body) > 1024:
        return web.Response(status=400, text="too much")
    return web.Response(text="ok")


async def test_a_failing_record_over_1_mib_is_dead_lettered_whole_and_the_partition_moves_on(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    big = bytes(range(256)) * (1536 * 4)  # 1.5 MiB
    gateway.function(FUNCTION, _fails_when_large)
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(big, key=b"big", headers=[("origin", b"test")])
    await topic.send(b"small")
    connector = await start_connector(topic)
    await eventually(lambda: _committed(topic, 2), 60, what="the partition committed past both")
    assert [len(c.body) for c in gateway.calls_to(FUNCTION)] == [len(big), len(b"small")]
    dead = await topic.read(topic.dead_letter)
    assert len(dead) == 1
    value, headers = dead[0]
    assert value == big
    assert headers["origin"] == b"test"
    assert headers["Ferry-Source-Offset"] == b"0"
    assert "Ferry-Value-Omitted" not in headers
    assert await connector.process.stop() == 0, connector.process.output()
