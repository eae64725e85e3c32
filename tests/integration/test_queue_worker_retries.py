"""Retries go through the broker, honour Retry-After, and end in a dead letter with a callback."""

from __future__ import annotations

import base64
import json
import time

from aiohttp import web

from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def test_503_twice_then_200_is_invoked_three_times_with_one_callback(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    statuses = iter([503, 503])
    gateway.function("flaky", lambda call: web.Response(status=next(statuses, 200), text="ok"))
    request = await queue.publish("flaky", b"x", callback_url=receiver.url())
    async with queue.worker():
        (callback,) = await receiver.wait_for(1)
        await eventually(queue.drained, what="acked")
    assert len(gateway.calls_to("flaky")) == 3
    assert callback.headers["X-Function-Status"] == "200"
    assert callback.headers["X-Retry"] == "2"
    assert callback.headers["X-Call-Id"] == request.call_id
    assert len(receiver.received) == 1
    assert await queue.dead_letters() == []


async def test_retry_after_is_honoured(queue: QueueUnderTest, gateway: FakeGateway) -> None:
    statuses = iter([429])

    def limited(call: Call) -> web.Response:
        status = next(statuses, 200)
        return web.Response(status=status, headers={"Retry-After": "2"} if status == 429 else {})

    gateway.function("limited", limited)
    await queue.publish("limited", b"x")
    async with queue.worker(initial_retry_wait="10ms", max_retry_wait="20ms"):
        await eventually(lambda: len(gateway.calls_to("limited")) >= 2, what="the retry")
    first, second = gateway.calls_to("limited")
    assert second.at - first.at >= 1.9


async def test_always_500_is_dead_lettered_after_max_attempts_with_a_final_callback(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("broken", lambda call: web.Response(status=500, text="boom"))
    request = await queue.publish("broken", b"payload", callback_url=receiver.url())
    async with queue.worker(max_retry_attempts="3"):
        (callback,) = await receiver.wait_for(1)
        await eventually(queue.drained, what="nothing pending")
    assert len(gateway.calls_to("broken")) == 3
    assert callback.headers["X-Function-Status"] == "500"
    assert callback.headers["X-Retry"] == "2"
    assert callback.headers["X-Retry-Max"] == "3"
    assert callback.body == b"boom"
    (dead,) = await queue.dead_letters()
    assert dead.headers["Ferry-Attempts"] == "3"
    assert dead.headers["Ferry-Last-Status"] == "500"
    assert "after 3 attempts" in dead.headers["Ferry-Dead-Reason"]
    assert dead.headers["Ferry-Call-Id"] == request.call_id
    assert dead.subject.endswith(".broken")


async def test_a_status_not_in_retry_codes_is_final_at_once(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("bad-input", lambda call: web.Response(status=400, text="nope"))
    await queue.publish("bad-input", b"x", callback_url=receiver.url())
    async with queue.worker():
        (callback,) = await receiver.wait_for(1)
    assert len(gateway.calls_to("bad-input")) == 1
    assert callback.headers["X-Function-Status"] == "400"
    (dead,) = await queue.dead_letters()
    assert "not retried" in dead.headers["Ferry-Dead-Reason"]


async def test_retry_annotations_override_the_worker_policy(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("picky", lambda call: web.Response(status=418))
    await queue.publish(
        "picky",
        b"x",
        annotations={"com.openfaas.retry.attempts": "2", "com.openfaas.retry.codes": "418"},
    )
    async with queue.worker(max_retry_attempts="6"):
        await eventually(queue.dead_letters, what="a dead letter")
    assert len(gateway.calls_to("picky")) == 2


async def test_an_unreachable_function_is_retried_and_reported_as_503(
    queue: QueueUnderTest, receiver: CallbackReceiver
) -> None:
    await queue.publish("nowhere", b"x", callback_url=receiver.url())
    started = time.monotonic()
    async with queue.worker(gateway_url="http://127.0.0.1:9", max_retry_attempts="2"):
        (callback,) = await receiver.wait_for(1)
    assert callback.headers["X-Function-Status"] == "503"
    assert time.monotonic() - started < 60
    (dead,) = await queue.dead_letters()
    assert "could not reach" in dead.headers["Ferry-Dead-Reason"]


async def test_a_failure_that_cannot_be_dead_lettered_stays_queued_until_it_can(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    from asyncq.jetstream import dead_letter_stream_config
    from connectors.jetstream.setup import ensure_stream

    gateway.function("broken", lambda call: web.Response(status=500))
    async with queue.worker(max_retry_attempts="1"):
        await queue.js.delete_stream(queue.dead_stream)  # the dead-letter stream is gone
        await queue.publish("broken", b"keep me")
        await eventually(lambda: gateway.calls_to("broken"), what="the failing call")
        assert await queue.pending() == 1  # handed back, not acknowledged
        await ensure_stream(queue.js, dead_letter_stream_config(queue.dead_stream), 1)
        await eventually(queue.dead_letters, 30, what="the dead letter once it can be written")
        await eventually(queue.drained, what="acknowledged after that")
    (dead,) = await queue.dead_letters()
    assert json.loads(dead.data)["Body"] == base64.b64encode(b"keep me").decode()
    # handed back with a pause, not redelivered in a tight loop
    assert len(gateway.calls_to("broken")) == 2
