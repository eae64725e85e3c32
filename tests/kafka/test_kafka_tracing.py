"""Tracing in `ferry kafka-connector`: a record's `traceparent` header is continued; a record
without one starts a trace of its own. Spans go over OTLP/HTTP to a receiver in the test."""

from __future__ import annotations

import pytest

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic
from tests.support.otlp import OtlpReceiver, otlp, traceparent_ids
from tests.support.ports import eventually

pytestmark = pytest.mark.slow
assert otlp  # a fixture

SENDER_TRACE = "0af7651916cd43dd8448eb211c80319c"
SENDER_SPAN = "b7ad6b7169203331"


async def test_a_record_with_a_traceparent_is_continued_and_one_without_starts_a_trace(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector, otlp: OtlpReceiver
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    traceparent = f"00-{SENDER_TRACE}-{SENDER_SPAN}-01".encode()
    await topic.send(b"traced", headers=[("traceparent", traceparent)])
    await topic.send(b"untraced")
    connector = await start_connector(topic, **otlp.env())
    await eventually(lambda: len(gateway.calls_to(FUNCTION)) == 2, 30, what="both records")
    await otlp.wait_for(4)  # a process and an invoke span per record
    assert await connector.process.stop() == 0, connector.process.output()

    traced, untraced = otlp.named("process ")
    assert (traced.name, traced.kind, traced.service) == (
        f"process {topic.name}",
        "consumer",
        "ferry-kafka-connector",
    )
    assert (traced.trace_id, traced.parent_id) == (SENDER_TRACE, SENDER_SPAN)
    assert traced.links == [(SENDER_TRACE, SENDER_SPAN)]
    assert untraced.parent_id == "" and untraced.links == []
    assert untraced.trace_id != SENDER_TRACE
    for offset, process in enumerate((traced, untraced)):
        assert process.attributes["messaging.system"] == "kafka"
        assert process.attributes["messaging.destination.name"] == topic.name
        assert process.attributes["messaging.destination.partition.id"] == "0"
        assert process.attributes["messaging.kafka.offset"] == offset
    calls = gateway.calls_to(FUNCTION)
    for process, call in zip((traced, untraced), calls, strict=True):
        (invoke,) = [s for s in otlp.named("invoke ") if s.parent_id == process.span_id]
        assert (invoke.kind, invoke.trace_id) == ("client", process.trace_id)
        assert traceparent_ids(call.headers["traceparent"]) == invoke.traceparent_ids
