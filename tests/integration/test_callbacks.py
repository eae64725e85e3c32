"""Callbacks are guarded against SSRF, can be signed, and retry a failing receiver."""

from __future__ import annotations

import asyncio
import socket
import time

from aiohttp import web

from connectors.core.callback import verify_signature
from tests.support.http import CallbackReceiver, FakeGateway
from tests.support.http1 import serve
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def test_a_loopback_callback_is_refused_unless_allowed(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("echo")
    await queue.publish("echo", b"x", callback_url=receiver.url())
    async with queue.worker(callback_allow_private="false") as worker:
        await eventually(queue.drained, what="acked")
        refused = worker.registry.get_sample_value(
            "queue_worker_callbacks_total", {"outcome": "refused"}
        )
    assert gateway.calls_to("echo")
    assert receiver.received == []
    assert refused == 1


async def test_the_allow_list_admits_a_named_private_host(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("echo")
    await queue.publish("echo", b"x", callback_url=receiver.url())
    async with queue.worker(callback_allow_private="false", callback_allowed_hosts="127.0.0.0/8"):
        await receiver.wait_for(1)


async def test_a_name_resolving_to_loopback_is_refused_once_and_counted_as_refused(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    # this machine's own name resolves to a loopback or private address, not to a public one
    host = socket.gethostname()
    gateway.function("echo")
    await queue.publish("echo", b"x", callback_url=f"http://{host}:{receiver.port}/cb")
    async with queue.worker(callback_allow_private="false", callback_max_wait="1m") as worker:
        await eventually(queue.drained, timeout=10, what="acked without retries")
        outcomes = {
            outcome: worker.registry.get_sample_value(
                "queue_worker_callbacks_total", {"outcome": outcome}
            )
            for outcome in ("refused", "failed")
        }
    assert receiver.received == []
    assert outcomes == {"refused": 1, "failed": None}


async def test_callbacks_are_signed_with_the_shared_secret(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("echo")
    await queue.publish("echo", b"signed body", callback_url=receiver.url())
    async with queue.worker(callback_signing_secret="s3cret"):
        (callback,) = await receiver.wait_for(1)
    signature = callback.headers["X-Ferry-Signature"]
    assert verify_signature("s3cret", signature, callback.body)
    assert not verify_signature("other", signature, callback.body)
    assert not verify_signature("s3cret", signature, callback.body + b"!")
    assert not verify_signature("s3cret", signature, callback.body, now=time.time() + 3600)


async def test_a_failing_receiver_is_retried_then_gets_the_callback(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("echo")
    receiver.status = 503
    await queue.publish("echo", b"x", callback_url=receiver.url())
    async with queue.worker(callback_max_attempts="5", callback_max_wait="200ms"):
        await receiver.wait_for(2)
        receiver.status = 200
        await receiver.wait_for(3, timeout=30)
        await eventually(queue.drained, what="acked")
    assert len({r.headers["X-Call-Id"] for r in receiver.received}) == 1


async def test_a_receiver_that_is_down_stops_new_work_instead_of_filling_memory(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    """Results waiting on their callbacks are capped (64 with max_inflight=1): past that the
    worker takes no new messages, and once the receiver is back every message completes."""
    gateway.function("echo")
    receiver.status = 503
    for _ in range(100):
        await queue.publish("echo", b"x", callback_url=receiver.url())
    async with queue.worker(
        max_inflight="1", callback_max_attempts="100", callback_max_wait="200ms"
    ) as worker:
        await eventually(lambda: len(gateway.calls_to("echo")) >= 64, what="64 invoked")
        await asyncio.sleep(1.0)  # time enough to invoke all 100, were it not held back
        invoked = len(gateway.calls_to("echo"))
        finishing = worker.registry.get_sample_value("queue_worker_messages_finishing")
        receiver.status = 200
        await eventually(queue.drained, timeout=60, what="all acked")
    assert 64 <= invoked <= 65  # the cap, plus at most the one call in flight when it was hit
    assert finishing is not None and finishing >= 64
    assert len(gateway.calls_to("echo")) == 100
    delivered = worker.registry.get_sample_value(
        "queue_worker_callbacks_total", {"outcome": "delivered"}
    )
    assert delivered == 100


async def test_answers_waiting_on_a_slow_receiver_are_bounded_by_bytes(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    """With 100 KiB answers and max_held_answer_bytes=300 KiB, a receiver that does not answer
    holds at most 3 answers plus the 2 calls running when the bound was hit: no other call
    starts until callbacks are delivered, then every message completes."""
    answer = 100 * 1024
    limit = 3 * answer
    release = asyncio.Event()
    arrived: list[bytes] = []

    async def slow_receiver(request: web.Request) -> web.Response:
        arrived.append(await request.read())
        await release.wait()
        return web.Response()

    runner, base = await serve(slow_receiver)
    gateway.function("echo")
    for _ in range(30):
        await queue.publish("echo", b"x" * answer, callback_url=f"{base}/callback")
    try:
        async with queue.worker(
            max_inflight="2", max_held_answer_bytes=str(limit), callback_timeout="60s"
        ) as worker:

            def sample(name: str) -> float:
                return worker.registry.get_sample_value(name) or 0.0

            def stalled() -> bool:  # held full and nothing running: no call can start now
                held = sample("queue_worker_held_answer_bytes")
                return held >= limit and sample("queue_worker_function_invocation_inflight") == 0

            await eventually(stalled, 20, what="the bound reached with nothing running")
            invoked = len(gateway.calls_to("echo"))
            held = sample("queue_worker_held_answer_bytes")
            release.set()
            await eventually(queue.drained, 60, what="every message acknowledged")
            assert sample("queue_worker_held_answer_bytes") == 0
    finally:
        release.set()
        await runner.cleanup()
    assert 3 <= invoked <= 5, invoked
    assert limit <= held <= limit + 2 * answer, held
    assert len(gateway.calls_to("echo")) == len(arrived) == 30
