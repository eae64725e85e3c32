"""Dead letters on the real broker: a copy that can never be written still leaves a dead
letter that says so, and nulls are copied as nulls."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.delivery import Delivery, Event
from connectors.core.invoker import InvocationResult
from connectors.core.retry import Outcome, Verdict
from connectors.core.topicmap import FunctionInfo
from connectors.kafka.deadletter import OMITTED, DeadLetters
from tests.support.kafka import KafkaTopic


def _failed(topic: str) -> Delivery:
    result = InvocationResult(function="fn.ns", status=400, attempt=1, duration=0.01)
    return Delivery(
        Event(topic=topic, body=b""),
        FunctionInfo("fn", "ns"),
        result,
        Outcome(Verdict.FAILED, reason="function returned 400"),
    )


async def _dead_letters(
    producer_limit: int, topic: KafkaTopic
) -> tuple[DeadLetters, AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        bootstrap_servers=topic.broker.bootstrap,
        enable_idempotence=False,
        max_request_size=producer_limit,
    )
    await producer.start()
    metrics = ConnectorMetrics(CollectorRegistry(), 1)
    return DeadLetters(producer, topic.dead_letter, metrics, lambda: False), producer


async def test_a_copy_that_can_never_be_written_leaves_a_dead_letter_with_its_coordinates(
    topic: KafkaTopic,
) -> None:
    dead, producer = await _dead_letters(64 * 1024, topic)
    try:
        await dead.record(
            _failed(topic.name),
            partition=0,
            offset=41,
            key=b"k",
            value=b"v" * 100_000,
            headers=[("origin", b"test")],
        )
    finally:
        await producer.stop()
    (letter,) = await topic.read(topic.dead_letter)
    value, headers = letter
    assert value == b""
    assert headers["Ferry-Source-Topic"] == topic.name.encode()
    assert headers["Ferry-Source-Partition"] == b"0"
    assert headers["Ferry-Source-Offset"] == b"41"
    assert headers["Ferry-Function"] == b"fn.ns"
    assert b"100" in headers[OMITTED] and b"refused" in headers[OMITTED]
    assert "origin" not in headers
    samples = [s for metric in dead.metrics.dead_letters.collect() for s in metric.samples]
    assert [
        (s.labels["function"], s.value)
        for s in samples
        if s.name.endswith("_total") and s.labels["destination"] == topic.dead_letter
    ] == [("fn.ns", 1.0)]
