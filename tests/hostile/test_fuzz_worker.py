"""A bounded end-to-end fuzz run: thousands of generated hostile messages on a real stream, then
one valid call. The worker stays connected and ready, every message is either invoked or
dead-lettered (exactly once), and nothing is left pending or cycling."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from tests.hostile.hostile_messages import generate
from tests.support.http import Call, FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

COUNT = 3000  # bounded: the run takes seconds, not minutes
SEED = 13


async def _refuse(call: Call) -> web.Response:
    return web.Response(status=400, text="no")


async def _unavailable(call: Call) -> web.Response:
    return web.Response(status=503, text="later")


async def test_thousands_of_hostile_messages_end_invoked_or_dead_and_the_worker_stays_up(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    gateway.function("broken", _refuse)
    gateway.function("flaky", _unavailable)
    messages = generate(COUNT, SEED)
    for message in messages:
        await queue.publish_raw(message.data)
    env = {
        "max_inflight": "32",
        "max_retry_attempts": "3",
        "callback_allow_private": "false",
        # an always-503 function would open its circuit breaker and its calls would wait for it
        # (test_queue_worker_breaker.py); here they must end, as dead letters after 3 attempts
        "breaker_enabled": "false",
    }
    async with queue.worker(**env) as worker:
        expected_dead = sum(not m.invoked for m in messages)

        async def all_accounted_for() -> bool:
            echoed = len(gateway.calls_to("echo"))  # echo answers every call with 200
            return echoed + len(await queue.dead_letters()) >= COUNT

        await eventually(all_accounted_for, timeout=240, interval=0.5, what="every message")
        await queue.publish("echo", b"the valid call after")
        await eventually(
            lambda: any(c.body == b"the valid call after" for c in gateway.calls_to("echo")),
            what="the valid call",
        )
        assert worker.ready()
        assert worker._nc is not None and worker._nc.is_connected
        await eventually(queue.drained, what="nothing pending")

    dead = await queue.dead_letters()
    echoed = Counter(c.body for c in gateway.calls_to("echo"))
    for message in messages:
        if message.invoked:
            assert echoed[message.marker] == 1, (message.kind, message.data[:200])
        else:
            assert echoed[message.marker] == 0, (message.kind, message.data[:200])
    assert len(dead) == expected_dead
    assert sorted(d.data for d in dead) == sorted(m.data for m in messages if not m.invoked)
    assert all(d.headers["Ferry-Dead-Reason"] for d in dead)
    flaky = [d for d in dead if b'"flaky"' in d.data]
    assert flaky, "the generated messages include calls to a function that always answers 503"
    assert {d.headers["Ferry-Attempts"] for d in flaky} == {"3"}  # retried, then dead
