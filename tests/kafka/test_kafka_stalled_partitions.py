"""A partition that cannot move on is visible: `/readyz` answers 503 and
`kafka_connector_stalled_partitions` counts it, instead of health 200 while nothing moves.
Here the dead letter of a failed record cannot be written (the broker refuses the topic
name), so the record can be neither committed nor dropped."""

from __future__ import annotations

from aiohttp import web

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector
from tests.support.ports import eventually


async def _stalled(connector: RunningConnector, count: int) -> bool:
    return await connector.metric("kafka_connector_stalled_partitions") == count


async def test_a_record_whose_dead_letter_cannot_be_written_shows_its_partition_stalled(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION, lambda call: web.Response(status=400, text="no"))
    gateway.subscribe(FUNCTION, topic.name)
    connector = await start_connector(
        topic, dead_letter_topic="not a topic name!", graceful_timeout="2s"
    )
    await eventually(connector.ready, 30, what="the connector ready")
    await topic.send(b"refused")
    await eventually(lambda: _stalled(connector, 1), 30, what="the partition counted stalled")
    assert not await connector.ready()
    assert (await topic.committed())[0] in (-1, 0)  # never committed past the record
    assert await connector.process.stop() == 0, connector.process.output()
    assert (await topic.committed())[0] in (-1, 0)
