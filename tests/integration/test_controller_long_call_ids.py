"""A connector's deterministic call ids that the front door would refuse (a long Kafka topic's,
a cron slot of a long function name) reach `ferry gateway` as ids it takes, the same for a
re-sent event, so JetStream still stores it once."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from connectors.core.config import GatewaySettings, RetrySettings
from connectors.core.connector_config import ConnectorSettings
from connectors.core.connector_metrics import ConnectorMetrics
from connectors.core.controller import Controller
from connectors.core.delivery import Event
from connectors.core.gateway import GatewayClient
from connectors.core.invoker import Invoker
from connectors.core.retry import RetryPolicy
from connectors.core.targets import addressable_call_id, call_id_problem
from connectors.core.topicmap import TopicMapRefresher
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.queue import QueueUnderTest

LONG_TOPIC = "orders." + "x" * 240  # Kafka allows topic names of up to 249 characters


def test_a_refused_id_becomes_a_stable_one_the_front_door_takes() -> None:
    for text in (f"{LONG_TOPIC}-0-17", "slot of a/b:123", "..", "a" * 129):
        made = addressable_call_id(text)
        assert call_id_problem(made) is None
        assert made == addressable_call_id(text)  # the same in every replica
    assert addressable_call_id(f"{LONG_TOPIC}-0-17") != addressable_call_id(f"{LONG_TOPIC}-0-18")
    assert addressable_call_id("orders-0-17") == "orders-0-17"  # ids it takes stay as they are


async def test_a_long_event_id_is_queued_through_the_front_door_once(
    queue: QueueUnderTest, gateway: FakeGateway, tmp_path: Path
) -> None:
    functions = write_functions(
        tmp_path / "functions.yml",
        {"fn": {"url": f"{gateway.url}/function/fn", "annotations": {"topic": LONG_TOPIC}}},
    )
    async with running_gateway(gateway_env(queue, functions_file=str(functions))) as front:
        client = GatewayClient(GatewaySettings(gateway_url=front.url), max_inflight=4)
        settings = ConnectorSettings(asynchronous_invocation=True)
        topics = TopicMapRefresher(client, interval=60)
        controller = Controller(
            connector="test",
            settings=settings,
            invoker=Invoker(client),
            policy=RetryPolicy.from_settings(RetrySettings(max_retry_attempts=1)),
            topics=topics,
            metrics=ConnectorMetrics(CollectorRegistry(), settings.max_inflight),
        )
        try:
            assert await topics.refresh()
            event = Event(LONG_TOPIC, b"payload", call_id=f"{LONG_TOPIC}-0-17")
            for _ in range(2):  # a re-sent record: stored once
                (delivery,) = await controller.dispatch(event)
                assert delivery.ok, delivery.result
        finally:
            await client.close()
    assert await queue.stored() == 1
