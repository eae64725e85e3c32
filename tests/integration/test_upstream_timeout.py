"""When ferry stops waiting for a function, the function may still run: it is not invoked again.

A 502 or 504 from the gateway is different: the gateway gave up on the function and said so,
and that stays retryable (as in OpenFaaS Pro).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def _slow(call: Call) -> web.Response:
    await asyncio.sleep(3)
    return web.Response(text="late")


async def test_a_call_outlasting_upstream_timeout_is_invoked_once_and_fails_with_the_reason(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("slow", _slow)
    await queue.publish("slow", b"x", callback_url=receiver.url())
    async with queue.worker(upstream_timeout="1s", max_retry_attempts="3"):
        (callback,) = await receiver.wait_for(1)
        await eventually(queue.drained, what="acknowledged")
    assert len(gateway.calls_to("slow")) == 1
    assert callback.headers["X-Function-Status"] == "503"
    (dead,) = await queue.dead_letters()
    reason = dead.headers["Ferry-Dead-Reason"]
    assert "timed out after 1s" in reason
    assert "retry_on_timeout=false" in reason
    assert dead.headers["Ferry-Attempts"] == "1"


async def test_a_call_outlasting_upstream_timeout_is_invoked_again_with_retry_on_timeout(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("slow", _slow)
    await queue.publish("slow", b"x")
    async with queue.worker(upstream_timeout="1s", max_retry_attempts="2", retry_on_timeout="true"):
        await eventually(queue.dead_letters, 30, what="a dead letter")
        await eventually(queue.drained, what="acknowledged")
    assert len(gateway.calls_to("slow")) == 2
    (dead,) = await queue.dead_letters()
    assert "timed out after 1s after 2 attempts" in dead.headers["Ferry-Dead-Reason"]


async def test_a_504_from_the_gateway_stays_retryable_without_retry_on_timeout(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    statuses = iter([504, 502])
    gateway.function("gated", lambda call: web.Response(status=next(statuses, 200)))
    await queue.publish("gated", b"x")
    async with queue.worker():
        await eventually(lambda: len(gateway.calls_to("gated")) == 3, what="two retries")
        await eventually(queue.drained, what="acknowledged")
    assert await queue.dead_letters() == []
