"""Prefetch: a bounded number of messages wait, in progress, for a slot; never more run."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

from connectors.core.runner import serve
from connectors.core.settings import load_settings
from queue_worker.config import QueueWorkerConfig
from queue_worker.worker import QueueWorker
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def _ack_pending(queue: QueueUnderTest) -> int:
    info = await queue.js.consumer_info(queue.stream, "faas-workers")
    return int(info.num_ack_pending or 0)


def _released_by(release: asyncio.Event, *, hold: set[bytes] | None = None):  # type: ignore[no-untyped-def]
    async def handler(call: Call) -> web.Response:
        if hold is None or call.body in hold:
            await release.wait()
        return web.Response(text="done")

    return handler


async def _queue_slow_calls(queue: QueueUnderTest, gateway: FakeGateway, count: int) -> list[bytes]:
    """`count` calls queued to `slow`, a function that takes 1.6 s to answer; their bodies."""

    async def slow(call: Call) -> web.Response:
        await asyncio.sleep(1.6)
        return web.Response(text="slept")

    gateway.function("slow", slow)
    bodies = [f"s{i}".encode() for i in range(count)]
    for body in bodies:
        await queue.publish("slow", body)
    return bodies


async def test_a_worker_holds_at_most_prefetch_messages_beyond_max_inflight(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    release = asyncio.Event()
    gateway.function("held", _released_by(release))
    bodies = [f"m{i}".encode() for i in range(12)]
    for body in bodies:
        await queue.publish("held", body)
    async with queue.worker(max_inflight="2", prefetch="3", scaling_mode="static") as first:
        await eventually(lambda: gateway.running == 2, what="two calls running")
        await eventually(lambda: len(first.prefetched) == 3, what="three messages waiting")
        assert await _ack_pending(queue) == 5
        # the rest is left for other replicas: a second worker gets work at once
        async with queue.worker(max_inflight="2", prefetch="0", scaling_mode="static"):
            await eventually(lambda: gateway.running == 4, what="the second worker's calls")
            assert gateway.peak == 4
            release.set()
            await eventually(lambda: len(gateway.calls_to("held")) >= 12, what="all calls")
            await eventually(queue.drained, what="acked")
    assert Counter(c.body for c in gateway.calls_to("held")) == Counter(bodies)


async def test_a_message_waiting_longer_than_ack_wait_is_not_redelivered(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    bodies = await _queue_slow_calls(queue, gateway, 4)
    # one slot, three waiting: the last waits about 5 s, five times ack_wait
    async with queue.worker(
        max_inflight="1", prefetch="3", scaling_mode="static", ack_wait="1s", upstream_timeout="5s"
    ):
        await eventually(lambda: len(gateway.calls_to("slow")) >= 4, timeout=30, what="4 calls")
        await eventually(queue.drained, what="acked")
        # all acknowledged, so none can come back; a redelivery while one waited or ran
        # would have been counted as a fifth delivery
        assert await queue.deliveries() == len(bodies)
    assert gateway.peak == 1
    assert Counter(c.body for c in gateway.calls_to("slow")) == Counter(bodies)


async def test_stopping_hands_waiting_messages_back_before_the_running_call_ends(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    release = asyncio.Event()
    gateway.function("job", _released_by(release, hold={b"job0"}))
    bodies = [f"job{i}".encode() for i in range(4)]
    for body in bodies:
        await queue.publish("job", body)
    config = load_settings(
        QueueWorkerConfig, queue.env(max_inflight="1", prefetch="3", scaling_mode="static")
    )
    first = QueueWorker(config)
    stop = asyncio.Event()
    running = asyncio.create_task(
        serve(first, config.runtime, handle_signals=False, stop_event=stop)
    )
    try:
        await eventually(lambda: len(first.prefetched) == 3, what="three messages waiting")
        # started: its request reaches the function a moment later
        await eventually(
            lambda: [c.body for c in gateway.calls_to("job")] == [b"job0"], what="job0 running"
        )
        stop.set()  # job0 still runs: the waiting three must go to another worker now
        async with queue.worker(max_inflight="4", prefetch="0", scaling_mode="static"):
            await eventually(lambda: len(gateway.calls_to("job")) >= 4, what="the other three")
            assert not running.done()
            release.set()
            assert await running == 0
            await eventually(queue.drained, what="acked")
    finally:
        release.set()
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
    assert Counter(c.body for c in gateway.calls_to("job")) == Counter(bodies)


def test_prefetch_auto_takes_nothing_ahead_for_a_one_at_a_time_worker(
    queue: QueueUnderTest,
) -> None:
    one = QueueWorker(load_settings(QueueWorkerConfig, queue.env(max_inflight="1")))
    many = QueueWorker(load_settings(QueueWorkerConfig, queue.env(max_inflight="200")))
    capped = QueueWorker(load_settings(QueueWorkerConfig, queue.env(max_inflight="5000")))
    assert (one.prefetched.limit, many.prefetched.limit, capped.prefetched.limit) == (0, 50, 64)


async def _all_ack_pending(queue: QueueUnderTest) -> int:
    """Delivered and not acknowledged, of the queue's consumer and fair mode's per-function
    consumers (a fair worker holds calls from either)."""
    infos = await queue.js.consumers_info(queue.stream)
    return sum(int(i.num_ack_pending or 0) for i in infos)


async def test_in_fair_mode_a_function_holds_at_most_prefetch_messages_ahead_of_its_slots(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    release = asyncio.Event()
    gateway.function("held", _released_by(release))
    bodies = [f"f{i}".encode() for i in range(12)]
    for body in bodies:
        await queue.publish("held", body)
    async with queue.worker(max_inflight="8", prefetch="2") as first:
        assert first.fair is not None
        await eventually(lambda: gateway.running == 8, what="eight calls running")
        await eventually(lambda: first.fair.held_ahead == 2, what="two messages ahead")
        assert await _all_ack_pending(queue) == 10
        # the rest is left for other replicas: a second worker gets work at once
        async with queue.worker(max_inflight="8", prefetch="0") as second:
            await eventually(lambda: gateway.running == 10, what="the second worker's calls")
            assert first.fair.held_ahead == 2
            assert gateway.peak == 10
            release.set()
            await eventually(lambda: len(gateway.calls_to("held")) >= 12, what="all calls")
            await eventually(queue.drained, what="acked")
        # none was redelivered
        assert await queue.deliveries(first, second) == len(bodies)
    assert Counter(c.body for c in gateway.calls_to("held")) == Counter(bodies)


async def test_in_fair_mode_stopping_hands_messages_held_ahead_back_at_once(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    release = asyncio.Event()
    gateway.function("job", _released_by(release, hold={b"job0"}))
    for body in (b"job0", b"job1"):
        await queue.publish("job", body)
    config = load_settings(QueueWorkerConfig, queue.env(max_inflight="1", prefetch="3"))
    first = QueueWorker(config)
    stop = asyncio.Event()
    running = asyncio.create_task(
        serve(first, config.runtime, handle_signals=False, stop_event=stop)
    )
    try:
        await eventually(
            lambda: first.fair is not None and first.fair.held_ahead == 1, what="one ahead"
        )
        # started: its request reaches the function a moment later
        await eventually(
            lambda: [c.body for c in gateway.calls_to("job")] == [b"job0"], what="job0 running"
        )
        stop.set()  # job0 still runs: job1 must go to another worker now
        async with queue.worker(max_inflight="4", prefetch="0"):
            await eventually(lambda: len(gateway.calls_to("job")) >= 2, what="job1 elsewhere")
            assert not running.done()
            release.set()
            assert await running == 0
            await eventually(queue.drained, what="acked")
    finally:
        release.set()
        stop.set()
        await asyncio.gather(running, return_exceptions=True)
    assert sorted(c.body for c in gateway.calls_to("job")) == [b"job0", b"job1"]


async def test_in_fair_mode_a_message_held_ahead_longer_than_ack_wait_is_not_redelivered(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    bodies = await _queue_slow_calls(queue, gateway, 3)
    # one slot, one held ahead: each waits about 1.6 s there, past ack_wait
    async with queue.worker(
        max_inflight="1", prefetch="3", ack_wait="1s", upstream_timeout="5s"
    ) as worker:
        await eventually(lambda: len(gateway.calls_to("slow")) >= 3, timeout=30, what="3 calls")
        await eventually(queue.drained, what="acked")
        assert await queue.deliveries(worker) == len(bodies)
        assert worker.fair is not None
    assert gateway.peak == 1
    assert Counter(c.body for c in gateway.calls_to("slow")) == Counter(bodies)
