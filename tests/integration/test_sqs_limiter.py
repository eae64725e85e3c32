"""The per-function limiter in the SQS connector: a function answering 429 past its capacity
is slowed down to it, and no message runs out of attempts on the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support.capacity import CapacityFunction, always_refusing
from tests.support.http import FakeGateway, held_until
from tests.support.moto import MotoServer, Queues
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.sqs import start_connector

pytestmark = pytest.mark.slow

MESSAGES = 30


@pytest.fixture
async def queues(moto_server: MotoServer) -> AsyncIterator[Queues]:
    async with moto_server.sqs() as client:
        yield Queues(client, "limit")


async def test_a_function_answering_429_past_its_capacity_gets_every_message_once(
    moto_server: MotoServer, queues: Queues, gateway: FakeGateway, procs: list[FerryProcess]
) -> None:
    url = await queues.create("capacity")
    dead = await queues.create("capacity-dead")
    function = CapacityFunction(capacity=2, seconds=0.05)
    gateway.function("fn", function.handler())
    gateway.subscribe("fn", url.rsplit("/", 1)[-1])
    for i in range(MESSAGES):
        await queues.send(url, str(i))
    # two attempts: without the limiter, ten messages at once against a capacity of two
    # would run some of them out
    proc = await start_connector(
        procs, moto_server, gateway, url, max_retry_attempts="2", dead_letter_queue_url=dead
    )
    await eventually(lambda: len(function.accepted) >= MESSAGES, 60, what="every message")
    await eventually(lambda: _empty(queues, url), 30, what="every message deleted")
    assert await proc.stop() == 0, proc.output()
    assert sorted(int(c.body) for c in function.accepted) == list(range(MESSAGES))
    assert await queues.depth(dead) == 0
    assert function.peak <= 2


async def test_a_function_that_always_answers_429_still_ends_in_the_dead_letter_queue(
    moto_server: MotoServer, queues: Queues, gateway: FakeGateway, procs: list[FerryProcess]
) -> None:
    url = await queues.create("refusing")
    dead = await queues.create("refusing-dead")
    gateway.function("fn", always_refusing())
    gateway.subscribe("fn", url.rsplit("/", 1)[-1])
    await queues.send(url, "doomed")
    proc = await start_connector(
        procs, moto_server, gateway, url, max_retry_attempts="2", dead_letter_queue_url=dead
    )
    found = await eventually(lambda: queues.peek(dead), 60, what="the dead letter")
    assert await proc.stop() == 0, proc.output()
    assert found[0]["Body"] == "doomed"
    calls = len(gateway.calls_to("fn"))
    # each receive is one attempt with the limiter's free returns: more than the two attempts
    # alone, and bounded
    assert 2 < calls <= 2 * 51, calls


async def _empty(queues: Queues, url: str) -> bool:
    return await queues.depth(url) == 0


async def test_messages_waiting_for_one_functions_cap_leave_room_for_other_functions(
    moto_server: MotoServer,
    queues: Queues,
    gateway: FakeGateway,
    procs: list[FerryProcess],
) -> None:
    capped, other = await queues.create("capped"), await queues.create("other")
    release = asyncio.Event()
    try:
        gateway.function("slow", held_until(release))
        gateway.subscribe("slow", capped.rsplit("/", 1)[-1], **{"ferry.max_inflight": "1"})
        gateway.function("quick")
        gateway.subscribe("quick", other.rsplit("/", 1)[-1])
        for i in range(3):
            await queues.send(capped, f"slow-{i}")
        proc = await start_connector(
            procs, moto_server, gateway, f"{capped},{other}", max_inflight="2"
        )
        await eventually(lambda: gateway.calls_to("slow"), 30, what="the first capped call")
        for i in range(3):
            await queues.send(other, f"quick-{i}")
        # both slots were the capped function's (one running, one waiting for its cap): the
        # quick function's messages run anyway, while the capped call is still held
        await eventually(lambda: len(gateway.calls_to("quick")) == 3, 30, what="quick's calls")
        assert len(gateway.calls_to("slow")) == 1  # (a standard queue keeps no order)
    finally:
        release.set()
    await eventually(lambda: len(gateway.calls_to("slow")) == 3, 30, what="the capped calls")
    await eventually(lambda: _empty(queues, capped), 30, what="the capped queue emptied")
    await eventually(lambda: _empty(queues, other), 30, what="the other queue emptied")
    assert await proc.stop() == 0, proc.output()
