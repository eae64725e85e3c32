"""`max_event_age`: a record older than it (by its timestamp) is not delivered; it is
dead-lettered `expired`, counted, and committed like any other final outcome."""

from __future__ import annotations

import time

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic
from tests.support.ports import eventually


async def test_a_record_older_than_max_event_age_is_dead_lettered_not_delivered(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(b"stale", timestamp_ms=int((time.time() - 600) * 1000))
    await topic.send(b"fresh")
    connector = await start_connector(topic, max_event_age="60s")
    await eventually(lambda: gateway.calls_to(FUNCTION), 30, what="the fresh record delivered")
    dead = await eventually(lambda: topic.read(topic.dead_letter), 30, what="a dead letter")
    await eventually(lambda: _committed_at_least(topic, 2), 30, what="both records committed")
    expired = await connector.metric("connector_events_expired_total", topic=topic.name)
    assert await connector.process.stop() == 0, connector.process.output()
    assert [c.body for c in gateway.calls_to(FUNCTION)] == [b"fresh"]
    value, headers = dead[0]
    assert value == b"stale"
    assert headers["Ferry-Dead-Reason"].startswith(b"expired: the event is ")
    assert headers["Ferry-Last-Status"] == b"410"
    assert expired == 1


async def _committed_at_least(topic: KafkaTopic, count: int) -> bool:
    return (await topic.committed()).get(0, 0) >= count
