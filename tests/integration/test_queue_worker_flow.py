"""Concurrency, long calls, bad messages, sharing work, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

from aiohttp import web

from tests.support.http import Call, CallbackReceiver, FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest


def sleeper(seconds: float):  # type: ignore[no-untyped-def]
    async def handler(call: Call) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(text="slept")

    return handler


async def test_a_call_slower_than_ack_wait_completes_once(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    gateway.function("slow", sleeper(3.5))
    await queue.publish("slow", b"x", callback_url=receiver.url())
    async with queue.worker(ack_wait="1s", upstream_timeout="10s", max_inflight="4") as worker:
        await receiver.wait_for(1, timeout=30)
        await eventually(queue.drained, what="acked")
        # acknowledged, so it can no longer come back; had JetStream redelivered it while
        # the call ran (3.5 ack_waits), the consumer would have counted a second delivery
        assert await queue.deliveries(worker) == 1
    assert len(gateway.calls_to("slow")) == 1
    assert len(receiver.received) == 1


async def test_max_inflight_is_never_exceeded(queue: QueueUnderTest, gateway: FakeGateway) -> None:
    gateway.function("counted", sleeper(0.1))
    for i in range(40):
        await queue.publish("counted", str(i).encode())
    async with queue.worker(max_inflight="3"):
        await eventually(lambda: len(gateway.calls_to("counted")) >= 40, what="all calls")
        await eventually(queue.drained, what="acked")
    assert gateway.peak == 3


async def test_an_undecodable_message_is_dead_lettered_and_the_worker_goes_on(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("fine")
    await queue.publish_raw(b"{not json")
    await queue.publish_raw(json.dumps({"Method": "POST"}).encode())
    await queue.publish("fine", b"after")
    async with queue.worker():
        await eventually(lambda: gateway.calls_to("fine"), what="the good message")
        await eventually(queue.drained, what="acked")
    dead = await queue.dead_letters()
    reasons = sorted(d.headers["Ferry-Dead-Reason"] for d in dead)
    assert len(dead) == 2
    assert reasons[0].startswith("undecodable: Function is missing")
    assert reasons[1].startswith("undecodable: not JSON")
    assert {d.data for d in dead} == {b"{not json", b'{"Method": "POST"}'}


async def test_two_workers_share_the_work_and_never_both_handle_a_message(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("shared", sleeper(0.05))
    bodies = [f"m{i}".encode() for i in range(60)]
    for body in bodies:
        await queue.publish("shared", body)
    async with queue.worker(max_inflight="2") as one, queue.worker(max_inflight="2") as two:
        await eventually(lambda: len(gateway.calls_to("shared")) >= 60, what="all calls")
        await eventually(queue.drained, what="acked")
    seen = Counter(c.body for c in gateway.calls_to("shared"))
    assert set(seen) == set(bodies)
    assert max(seen.values()) == 1
    counts = [_processed(w.registry) for w in (one, two)]
    assert sum(counts) == 60
    assert min(counts) > 0


def _processed(registry) -> float:  # type: ignore[no-untyped-def]
    total = 0.0
    for metric in registry.collect():
        if metric.name == "queue_worker_messages_processed":
            total += sum(s.value for s in metric.samples if s.name.endswith("_total"))
    return total


async def test_sigterm_finishes_in_flight_calls_sends_callbacks_and_hands_back_the_rest(
    queue: QueueUnderTest, gateway: FakeGateway, receiver: CallbackReceiver
) -> None:
    finished: list[bytes] = []

    async def slow(call: Call) -> web.Response:
        await asyncio.sleep(1.0)
        finished.append(call.body)
        return web.Response(text="done")

    gateway.function("slow", slow)
    bodies = [f"job{i}".encode() for i in range(6)]
    for body in bodies:
        await queue.publish("slow", body, callback_url=receiver.url())
    first = await FerryProcess("queue-worker", queue.env(max_inflight="2")).start()
    try:
        await eventually(lambda: len(gateway.calls_to("slow")) >= 2, what="two calls in flight")
        in_flight = {c.body for c in gateway.calls_to("slow")}
        assert await first.stop() == 0, first.output()
        # the calls that were running finished and were called back before the exit
        assert in_flight <= set(finished)
        called_back = {r.headers["X-Call-Id"] for r in receiver.received}
        assert len(called_back) == len(set(finished))
        assert "stopped" in first.output()
    finally:
        await first.close()
    async with queue.worker(max_inflight="6"):
        await eventually(lambda: set(finished) >= set(bodies), what="the rest redelivered")
        await receiver.wait_for(6)
        await eventually(queue.drained, what="acked")
    assert Counter(c.body for c in gateway.calls_to("slow")).most_common(1)[0][1] == 1
