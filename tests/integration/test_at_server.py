"""`at_server`, which the ledger tests rely on: a subscription made just before it returns gets
what another connection publishes right after (nats-py's `flush()` missed 14 of 200 such
messages on a loaded machine: its PING overtakes the SUB still in the client's buffer)."""

from __future__ import annotations

import asyncio

import nats
from nats.aio.msg import Msg

from tests.support.queue import QueueUnderTest
from tests.support.subscriptions import at_server

ROUNDS = 200


async def test_what_another_connection_publishes_after_at_server_is_delivered(
    queue: QueueUnderTest,
) -> None:
    publisher = await nats.connect(queue.nats_url)
    missed: list[int] = []
    try:
        for number in range(ROUNDS):
            got = asyncio.Event()

            async def seen(msg: Msg, got: asyncio.Event = got) -> None:
                got.set()

            sub = await queue.nc.subscribe(f"at-server.{number}", cb=seen)
            await at_server(queue.nc)
            await publisher.publish(f"at-server.{number}", b"x")
            try:
                await asyncio.wait_for(got.wait(), 5)
            except TimeoutError:
                missed.append(number)
            await sub.unsubscribe()
    finally:
        await publisher.close()
    assert missed == []
