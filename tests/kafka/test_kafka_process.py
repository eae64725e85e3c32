"""The connector as a process: start-up checks, topic map, headers, dead letters, responses."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp import web

from tests.kafka.conftest import FUNCTION, StartConnector, connector_env
from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector
from tests.support.ports import eventually, free_port
from tests.support.procs import FerryProcess


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"topics": " , "}, "topics"),
        ({"initial_offset": "middle"}, "initial_offset"),
        ({"ordering": "random"}, "ordering"),
        ({"broker_hosts": "127.0.0.1:{dead}", "startup_timeout": "3s"}, "broker_hosts"),
    ],
)
async def test_bad_configuration_exits_2_with_one_line_naming_the_variable(
    gateway: FakeGateway, topic: KafkaTopic, env: dict[str, str], named: str
) -> None:
    env = {k: v.format(dead=free_port()) for k, v in env.items()}
    proc = FerryProcess("kafka-connector", connector_env(gateway, topic, health_port="0", **env))
    await proc.start()
    try:
        assert proc.process is not None
        assert await asyncio.wait_for(proc.process.wait(), 30) == 2
        lines = proc.output().strip().splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith("ferry: ") and named in lines[0]
    finally:
        await proc.close()


async def test_topics_unset_exits_2(gateway: FakeGateway, topic: KafkaTopic) -> None:
    env = connector_env(gateway, topic, health_port="0")
    del env["topics"]
    proc = await FerryProcess("kafka-connector", env).start()
    try:
        assert proc.process is not None
        assert await asyncio.wait_for(proc.process.wait(), 30) == 2
        assert proc.output().strip().splitlines() == [
            "ferry: topics: name at least one topic to consume"
        ]
    finally:
        await proc.close()


async def test_unmatched_records_are_committed_and_a_later_subscriber_gets_new_ones(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe("someone-else", "another-topic")
    connector = await start_connector(topic)
    await topic.send(b"nobody-listens")
    await eventually(lambda: _committed(topic, 1), 30, what="the unmatched record committed")
    assert await connector.metric("connector_unmatched_messages_total", topic=topic.name) == 1
    gateway.subscribe(FUNCTION, topic.name)
    await eventually(lambda: _map_size(connector, 2), 10, what="the rebuilt topic map")
    await topic.send(b"now-subscribed")
    await eventually(lambda: gateway.calls_to(FUNCTION), 30, what="the subscribed call")
    assert [c.body for c in gateway.calls_to(FUNCTION)] == [b"now-subscribed"]
    assert await connector.process.stop() == 0, connector.process.output()


async def test_functions_receive_kafka_headers_and_exact_key_bytes(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(b"text", key=b"order-1", headers=[("trace", b"t-1")])
    await topic.send(b"binary", key=b"\xff\xfe")
    connector = await start_connector(topic)
    await eventually(lambda: len(gateway.calls_to(FUNCTION)) == 2, 30, what="both records")
    text, binary = gateway.calls_to(FUNCTION)
    assert text.headers["X-Kafka-Topic"] == topic.name
    assert text.headers["X-Kafka-Partition"] == "0"
    assert text.headers["X-Kafka-Offset"] == "0"
    assert text.headers["X-Kafka-Key"] == "order-1"
    assert text.headers["X-Kafka-trace"] == "t-1"
    assert text.headers["X-Topic"] == topic.name
    assert text.headers["X-Connector"] == "kafka-connector"
    assert "X-Kafka-Key-Enc" not in text.headers
    assert base64.b64decode(binary.headers["X-Kafka-Key"]) == b"\xff\xfe"
    assert binary.headers["X-Kafka-Key-Enc"] == "b64"
    assert await connector.process.stop() == 0, connector.process.output()


async def test_a_dead_letter_names_function_reason_and_source_position(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION, lambda call: web.Response(status=400, text="bad input"))
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(b"ok-for-nobody", key=b"k", headers=[("origin", b"test")])
    connector = await start_connector(topic)
    dead = await eventually(lambda: topic.read(topic.dead_letter), 30, what="a dead letter")
    value, headers = dead[0]
    assert value == b"ok-for-nobody"
    assert headers["Ferry-Function"] == b"fn.openfaas-fn"
    assert b"400" in headers["Ferry-Dead-Reason"]
    assert headers["Ferry-Source-Topic"] == topic.name.encode()
    assert headers["Ferry-Source-Partition"] == b"0"
    assert headers["Ferry-Source-Offset"] == b"0"
    assert headers["origin"] == b"test"
    assert len(gateway.calls_to(FUNCTION)) == 1  # a 400 is not retried
    await eventually(lambda: _committed(topic, 1), 30, what="the dead record committed")
    assert await connector.process.stop() == 0, connector.process.output()


async def test_each_response_is_published_to_the_response_topic(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION, lambda call: web.Response(text=f"echo {call.body.decode()}"))
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(b"hello")
    connector = await start_connector(topic, response_topic=topic.responses)
    published = await eventually(lambda: topic.read(topic.responses), 30, what="a response")
    value, headers = published[0]
    assert value == b"echo hello"
    assert headers["X-Function-Name"] == b"fn.openfaas-fn"
    assert headers["X-Function-Status"] == b"200"
    assert headers["X-Kafka-Topic"] == topic.name.encode()
    assert headers["X-Kafka-Offset"] == b"0"
    assert await connector.process.stop() == 0, connector.process.output()


async def test_sigterm_cuts_a_retry_back_off_short_and_leaves_the_record_uncommitted(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION, lambda call: web.Response(status=503, text="later"))
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(b"retried")
    connector = await start_connector(
        topic, initial_retry_wait="60s", max_retry_wait="60s", graceful_timeout="60s"
    )
    await eventually(lambda: gateway.calls_to(FUNCTION), 30, what="the first attempt")
    await asyncio.sleep(0.5)  # now waiting out the back-off
    assert await connector.process.stop(timeout=20) == 0, connector.process.output()
    assert len(gateway.calls_to(FUNCTION)) == 1
    assert (await topic.committed())[0] == -1


async def _committed(topic: KafkaTopic, offset: int) -> bool:
    return (await topic.committed())[0] == offset


async def _map_size(connector: RunningConnector, size: int) -> bool:
    return await connector.metric("connector_topic_map_size") == size
