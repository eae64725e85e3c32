"""On a rebalance, in-flight records finish (within a bound) and what is final is committed."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.kafka.conftest import FUNCTION, Gate, StartConnector
from tests.support.http import Call, FakeGateway
from tests.support.kafka import KafkaTopic, RunningConnector
from tests.support.ports import eventually

ASSIGNED = "kafka_connector_assigned_partitions"
REVOKED = "kafka_connector_partitions_revoked_total"


def calls_with(gateway: FakeGateway, body: bytes) -> int:
    return sum(1 for c in gateway.calls_to(FUNCTION) if c.body == body)


async def test_a_record_in_flight_at_revocation_finishes_and_is_committed_once(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector, gate: Gate
) -> None:
    release = gate()

    async def slow_once(call: Call) -> web.Response:
        if call.body == b"slow":
            await release.wait()
        return web.Response(text="ok")

    gateway.function(FUNCTION, slow_once)
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(b"slow")
    one = await start_connector(topic)
    await eventually(lambda: calls_with(gateway, b"slow") == 1, 30, what="the slow call")
    two = await start_connector(topic)  # joining makes the group take p0 from `one`
    await eventually(lambda: _revoked(one), 30, what="the revocation to begin")
    await asyncio.sleep(0.5)
    release.set()  # finishes inside revoke_timeout
    await eventually(lambda: _committed(topic, 1), 30, what="the slow record committed")
    await eventually(lambda: _owned_by_one_of(one, two), 30, what="the rebalance to end")
    await topic.send(b"after")
    await eventually(lambda: calls_with(gateway, b"after") == 1, 30, what="the next record")
    assert calls_with(gateway, b"slow") == 1
    for connector in (one, two):
        assert await connector.process.stop() == 0, connector.process.output()


async def test_a_record_outliving_revoke_timeout_stays_uncommitted_and_runs_again(
    gateway: FakeGateway, topic: KafkaTopic, start_connector: StartConnector, gate: Gate
) -> None:
    first_call = asyncio.Event()
    unstick = gate()

    async def stuck_first_time(call: Call) -> web.Response:
        if call.body == b"stuck" and not first_call.is_set():
            first_call.set()
            await unstick.wait()
        return web.Response(text="ok")

    gateway.function(FUNCTION, stuck_first_time)
    gateway.subscribe(FUNCTION, topic.name)
    await topic.send(b"stuck")
    one = await start_connector(topic, revoke_timeout="1s")
    await eventually(first_call.is_set, 30, what="the stuck call")
    two = await start_connector(topic, revoke_timeout="1s")
    await eventually(lambda: calls_with(gateway, b"stuck") == 2, 30, what="the record again")
    unstick.set()
    await eventually(lambda: _committed(topic, 1), 30, what="committed after the second run")
    assert await one.metric("kafka_connector_revoke_cancelled_total") == 1
    for connector in (one, two):
        assert await connector.process.stop() == 0, connector.process.output()


async def _revoked(connector: RunningConnector) -> bool:
    return await connector.metric(REVOKED) >= 1


async def _owned_by_one_of(*connectors: RunningConnector) -> bool:
    return sum([await c.metric(ASSIGNED) for c in connectors]) == 1


async def _committed(topic: KafkaTopic, offset: int) -> bool:
    return (await topic.committed())[0] == offset
