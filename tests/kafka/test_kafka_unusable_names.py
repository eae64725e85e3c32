"""Names and namespaces from the gateway that cannot be called as they are (a lone surrogate,
which no URL can hold; `../system/x`, which quoting would turn into another route) are
skipped and counted like any malformed entry: the connector starts, keeps its topic map, and
every record of the partition is finished."""

from __future__ import annotations

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic
from tests.support.ports import eventually
from tests.support.procs import run_to_exit


async def _committed(topic: KafkaTopic, offset: int) -> bool:
    return (await topic.committed())[0] == offset


async def test_unusable_names_and_namespaces_are_skipped_at_start_up_and_later(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    gateway.namespaces = ["openfaas-fn", "b\ud800"]
    subscribed = {"topic": topic.name}
    gateway.raw_entries = [
        {"name": "a\ud800", "namespace": "openfaas-fn", "annotations": subscribed},
        {"name": "../system/x", "namespace": "openfaas-fn", "annotations": subscribed},
    ]
    connector = await start_connector(topic, max_uncommitted="2")
    for n in range(5):
        await topic.send(f"r{n}".encode())
    await eventually(lambda: _committed(topic, 5), 30, what="every record finished")
    assert await connector.metric("connector_topic_map_skipped_entries") == 3

    gateway.namespaces = ["openfaas-fn", "c\udfff", "../system"]
    await eventually(
        lambda: "'c\\udfff'" in connector.process.output(), 20, what="the new namespace skipped"
    )
    await topic.send(b"after")
    await eventually(lambda: _committed(topic, 6), 30, what="the record after the change")

    assert [c.body for c in gateway.calls] == [b"r0", b"r1", b"r2", b"r3", b"r4", b"after"]
    assert {c.function for c in gateway.calls} == {f"{FUNCTION}.openfaas-fn"}
    assert await connector.metric("connector_topic_map_skipped_entries") == 4
    assert connector.process.running
    assert await connector.process.stop() == 0, connector.process.output()
    output = connector.process.output()
    assert "Traceback" not in output and "died" not in output, output
    assert "Logging error" not in output, output


async def test_a_namespace_setting_the_gateway_could_not_have_is_refused_at_start() -> None:
    env = {"gateway_url": "http://127.0.0.1:9", "topics": "orders", "namespace": "../system"}
    status, output = await run_to_exit("kafka-connector", env)
    assert status == 2, output
    assert output.count("\n") == 0 and "Traceback" not in output, output
    assert "namespace" in output and "DNS-1123" in output
