"""The circuit breaker in the SQS connector: while a function is down its messages wait in
the connector, kept invisible, with no receive spent and none dead-lettered; a function that
answers 500 (its own error) is retried and dead-lettered as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.support.http import Call, FakeGateway
from tests.support.moto import MotoServer, Queues
from tests.support.outage import DownFunction
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.sqs import start_connector

pytestmark = pytest.mark.slow

MESSAGES = 10
OUTAGE = 2.5  # seconds the function stays down once it has failed enough to open the breaker


@pytest.fixture
async def queues(moto_server: MotoServer) -> AsyncIterator[Queues]:
    async with moto_server.sqs() as client:
        yield Queues(client, "breaker")


@pytest.fixture
async def down() -> AsyncIterator[DownFunction]:
    function = DownFunction()
    yield function
    await function.close()


async def test_a_function_down_for_a_while_loses_no_message_and_dead_letters_none(
    moto_server: MotoServer,
    queues: Queues,
    gateway: FakeGateway,
    procs: list[FerryProcess],
    down: DownFunction,
) -> None:
    url = await queues.create("outage")
    dead = await queues.create("outage-dead")
    gateway.function("fn", down.handler())
    gateway.subscribe("fn", url.rsplit("/", 1)[-1])
    for i in range(MESSAGES):
        await queues.send(url, str(i))
    proc = await start_connector(
        procs,
        moto_server,
        gateway,
        url,
        max_retry_attempts="3",
        dead_letter_queue_url=dead,
        breaker_open_for="1s",
    )
    await eventually(lambda: down.tried >= 5, 30, what="enough failures to open the breaker")
    await asyncio.sleep(OUTAGE)  # the outage goes on
    tried_while_down = down.tried
    await down.up()
    await eventually(lambda: len(down.received) >= MESSAGES, 30, what="every message")
    await eventually(lambda: _empty(queues, url), 30, what="every message deleted")
    assert await proc.stop() == 0, proc.output()

    assert await queues.depth(dead) == 0
    assert sorted(int(body) for body in down.received) == list(range(MESSAGES))
    assert tried_while_down <= 5 + 2 * MESSAGES, tried_while_down  # not 3 per message and more
    assert "breaker of fn.openfaas-fn is open" in proc.output()


async def test_a_function_answering_500_is_retried_and_dead_lettered_as_before(
    moto_server: MotoServer, queues: Queues, gateway: FakeGateway, procs: list[FerryProcess]
) -> None:
    url = await queues.create("failing")
    dead = await queues.create("failing-dead")

    async def failing(call: Call) -> web.Response:
        return web.Response(status=500, text="my own bug")

    gateway.function("fn", failing)
    gateway.subscribe("fn", url.rsplit("/", 1)[-1])
    await queues.send(url, "doomed")
    # had a 500 counted, the second would open the breaker for a minute: no dead letter soon
    proc = await start_connector(
        procs,
        moto_server,
        gateway,
        url,
        max_retry_attempts="4",
        dead_letter_queue_url=dead,
        breaker_failures="2",
        breaker_open_for="60s",
    )
    found = await eventually(lambda: queues.peek(dead), 30, what="the dead letter")
    assert await proc.stop() == 0, proc.output()
    assert found[0]["Body"] == "doomed"
    assert len(gateway.calls_to("fn")) == 4
    assert "breaker of" not in proc.output()


async def _empty(queues: Queues, url: str) -> bool:
    return await queues.depth(url) == 0
