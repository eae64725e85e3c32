"""A partition whose offsets go backwards (its topic deleted and created again, or the
consumer's position reset) starts its bookkeeping over: every record of the new run is
invoked, none is taken for one already seen, and the restart is logged and counted."""

from __future__ import annotations

from tests.kafka.conftest import FUNCTION, StartConnector
from tests.support.http import FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector
from tests.support.ports import eventually


async def _committed(topic: KafkaTopic, offset: int) -> bool:
    return (await topic.committed())[0] == offset


async def test_a_recreated_topic_has_every_record_invoked_from_offset_0(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    connector = await start_connector(topic)
    await topic.send_many([(None, f"old-{n}".encode()) for n in range(50)])
    await eventually(lambda: _committed(topic, 50), 30, what="the old records committed")

    await topic.recreate()
    await topic.send_many([(None, f"new-{n}".encode()) for n in range(60)])

    def new_offsets() -> list[str]:
        return [
            c.headers["X-Kafka-Offset"]
            for c in gateway.calls_to(FUNCTION)
            if c.body.startswith(b"new-")
        ]

    await eventually(lambda: len(set(new_offsets())) == 60, 30, what="all 60 new records")
    assert sorted(set(new_offsets()), key=int) == [str(n) for n in range(60)]
    await eventually(lambda: _committed(topic, 60), 30, what="the new run committed")
    assert await connector.metric("kafka_connector_offset_restarts_total") >= 1
    assert await connector.process.stop() == 0, connector.process.output()
    assert "went back" in connector.process.output()


async def test_a_recreated_topic_shorter_than_the_old_one_is_read_from_offset_0(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    """The new log never reaches the old position, so no commit is ever due there: the
    partition's end before the records already received is what shows it."""
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    connector = await start_connector(topic)
    await topic.send_many([(None, f"old-{n}".encode()) for n in range(50)])
    await eventually(lambda: _committed(topic, 50), 30, what="the old records committed")

    await topic.recreate()
    await topic.send_many([(None, f"new-{n}".encode()) for n in range(30)])

    def new_bodies() -> set[bytes]:
        return {c.body for c in gateway.calls_to(FUNCTION) if c.body.startswith(b"new-")}

    await eventually(lambda: len(new_bodies()) == 30, 30, what="all 30 new records")
    await eventually(lambda: _committed(topic, 30), 30, what="the new run committed")
    assert await connector.metric("kafka_connector_offset_restarts_total") >= 1
    assert await connector.process.stop() == 0, connector.process.output()


async def test_a_topic_recreated_right_after_a_restart_is_read_from_offset_0(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector
) -> None:
    """The new owner has committed nothing yet: the group's offset when the partition was
    assigned is what its first commit is checked against."""
    gateway.function(FUNCTION)
    gateway.subscribe(FUNCTION, topic.name)
    first = await start_connector(topic)
    await topic.send_many([(None, f"old-{n}".encode()) for n in range(50)])
    await eventually(lambda: _committed(topic, 50), 30, what="the old records committed")
    assert await first.process.stop() == 0, first.process.output()

    second = await start_connector(topic)
    await eventually(
        lambda: _metric_is(second, "kafka_connector_assigned_partitions", 1), 30, what="assigned"
    )
    await topic.recreate()
    await topic.send_many([(None, f"new-{n}".encode()) for n in range(60)])

    def new_bodies() -> set[bytes]:
        return {c.body for c in gateway.calls_to(FUNCTION) if c.body.startswith(b"new-")}

    await eventually(lambda: len(new_bodies()) == 60, 30, what="all 60 new records")
    await eventually(lambda: _committed(topic, 60), 30, what="the new run committed")
    assert await second.process.stop() == 0, second.process.output()


async def _metric_is(connector: RunningConnector, name: str, value: float) -> bool:
    return await connector.metric(name) == value
