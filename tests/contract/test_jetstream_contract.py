"""The source contract held by the queue worker against a real nats-server.

The worker takes two more steps before it acknowledges: the dead letter of a failed call and the
callback. Each is held here while the worker is SIGKILLed, so a worker that acknowledged before
the step was done would lose the step for good, and the test would see it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from nats.aio.msg import Msg

from asyncq.codec import decode
from tests.contract.base import FUNCTION, SourceContract, SourceHarness
from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest


class JetStreamHarness(SourceHarness):
    def __init__(self, gateway: FakeGateway, queue: QueueUnderTest) -> None:
        super().__init__(gateway)
        self.queue = queue

    async def send(self, body: bytes) -> None:
        await self.queue.publish(FUNCTION, body)

    def process(self, **env: str) -> FerryProcess:
        # a short ack_wait so a crashed worker's messages come back within the test
        env = {**self.base_env(), "ack_wait": "2s", **env}
        return FerryProcess("queue-worker", self.queue.env(**env))

    async def unfinished(self) -> int:
        return await self.queue.pending()

    async def dead_letters(self) -> list[bytes]:
        return [decode(d.data).body for d in await self.queue.dead_letters()]


class TestJetStreamContract(SourceContract):
    @pytest.fixture
    async def harness(
        self, gateway: FakeGateway, queue: QueueUnderTest
    ) -> AsyncIterator[SourceHarness]:
        harness = JetStreamHarness(gateway, queue)
        yield harness
        await harness.close()

    async def test_a_crash_while_the_dead_letter_is_pending_loses_nothing(
        self, harness: SourceHarness, gateway: FakeGateway, queue: QueueUnderTest
    ) -> None:
        answer = asyncio.Event()

        async def failing(call: Call) -> web.Response:
            await answer.wait()
            return web.Response(status=500, text="broken")

        gateway.function(FUNCTION, failing)
        await harness.send(b"doomed")
        first = await harness.start(max_retry_attempts="1")
        await eventually(lambda: gateway.calls_to(FUNCTION), 60, what="the call to start")
        # the dead-letter stream is replaced by a listener that takes the write and never
        # confirms it: the worker waits for JetStream's acknowledgement of the dead letter
        pending: list[Msg] = []

        async def take(msg: Msg) -> None:
            pending.append(msg)

        listener = await queue.nc.subscribe(f"{queue.dead_stream}.>", cb=take)
        await queue.js.delete_stream(queue.dead_stream)
        answer.set()
        await eventually(lambda: pending, 30, what="the dead letter to be pending")
        assert await harness.unfinished() == 1, "acknowledged before the dead letter was stored"
        await first.kill()
        await listener.unsubscribe()

        second = await harness.start(max_retry_attempts="1")  # it makes the stream again
        await eventually(
            lambda: len(gateway.calls_to(FUNCTION)) >= 2, 60, what="the call to run again"
        )
        await eventually(harness.dead_letters, 30, what="the dead letter")
        assert await harness.dead_letters() == [b"doomed"]
        await eventually(lambda: _is_zero(harness), 30, what="acknowledged after the dead letter")
        assert await second.stop() == 0, second.output()

    async def test_a_crash_while_the_callback_is_pending_loses_nothing(
        self,
        harness: SourceHarness,
        gateway: FakeGateway,
        queue: QueueUnderTest,
        receiver: CallbackReceiver,
    ) -> None:
        gateway.function(FUNCTION)
        receiver.hold = asyncio.Event()  # the receiver takes the callback and does not answer
        await queue.publish(FUNCTION, b"call me back", callback_url=receiver.url())
        first = await harness.start()
        await receiver.wait_for(1, timeout=60)
        assert await harness.unfinished() == 1, "acknowledged before the callback was sent"
        await first.kill()
        receiver.hold.set()

        second = await harness.start()
        await eventually(
            lambda: len(gateway.calls_to(FUNCTION)) >= 2, 60, what="the call to run again"
        )
        (_, again) = await receiver.wait_for(2)
        assert again.body == b"call me back"
        await eventually(lambda: _is_zero(harness), 30, what="acknowledged after the callback")
        assert await second.stop() == 0, second.output()


async def _is_zero(harness: SourceHarness) -> bool:
    return await harness.unfinished() == 0
