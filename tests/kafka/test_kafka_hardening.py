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


async def test_cafe_reaches_the_function_as_the_same_utf8_bytes_with_or_without_cjk_beside(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    cafe = "café".encode()
    await topic.send(b"alone", key=cafe, headers=[("word", cafe)])
    await topic.send(b"beside", key=cafe, headers=[("word", cafe), ("lang", "日本".encode())])
    connector = await start_connector(topic)
    await eventually(lambda: len(gateway.calls_to(FUNCTION)) == 2, 30, what="both records")
    for call in gateway.calls_to(FUNCTION):
        for name in ("X-Kafka-Key", "X-Kafka-word"):
            assert call.headers[name].encode("utf-8", "surrogateescape") == cafe, call.body
            assert name + "-Enc" not in call.headers
    beside = gateway.calls_to(FUNCTION)[1]
    assert beside.headers["X-Kafka-lang"].encode("utf-8", "surrogateescape") == "日本".encode()
    assert await connector.process.stop() == 0, connector.process.output()


async def test_a_tombstone_and_a_null_header_reach_the_function_marked_and_dead_letter_as_nulls(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION, lambda call: web.Response(status=400, text="no"))
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(None, key=b"gone", headers=[("nothing", None), ("empty", b"")])
    await topic.send(b"", key=b"empty-value")
    connector = await start_connector(topic)
    await eventually(lambda: _committed(topic, 2), 30, what="both records finished")
    tombstone, empty = gateway.calls_to(FUNCTION)
    assert tombstone.body == b"" and tombstone.headers["X-Kafka-Tombstone"] == "true"
    assert tombstone.headers["X-Kafka-nothing"] == ""
    assert tombstone.headers["X-Kafka-nothing-Enc"] == "null"
    assert tombstone.headers["X-Kafka-empty"] == ""
    assert "X-Kafka-empty-Enc" not in tombstone.headers
    assert empty.body == b"" and "X-Kafka-Tombstone" not in empty.headers
    dead = await topic.read_exactly(topic.dead_letter)
    assert [value for value, _ in dead] == [None, b""]
    assert ("nothing", None) in dead[0][1]
    assert ("empty", b"") in dead[0][1]
    assert await connector.process.stop() == 0, connector.process.output()
