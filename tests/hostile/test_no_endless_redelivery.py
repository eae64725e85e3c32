"""Finding 3: a message that cannot become a call is dead-lettered at once, and one that fails
in a way nobody foresaw is retried like any failed attempt, then dead-lettered: never cycled."""

from __future__ import annotations

import logging

import pytest

from connectors.core.invoker import InvocationRequest, InvocationResult, Invoker
from tests.support.http import FakeGateway
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest

UNUSABLE = {
    "deeply nested": b"[" * 100_000,
    "a 5,000-digit number": b'{"Function":"echo","Method":"POST","x":' + b"7" * 5000 + b"}",
    "half a surrogate pair": b'{"Function":"\\ud800"}',
    "a surrogate in a header": b'{"Function":"echo","Header":{"X-A":["\\udfff"]}}',
    "an encoded dot segment": b'{"Function":"echo","Path":"/%2e%2e/%2E%2e/system/functions"}',
    "a raw dot segment": b'{"Function":"echo","Path":"/a/../../system/functions"}',
    "an encoded slash": b'{"Function":"echo","Path":"/a%2f..%2fsystem"}',
    "an upper-case name": b'{"Function":"Echo"}',
}


async def test_messages_that_cannot_become_a_call_are_dead_lettered_at_the_first_delivery(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    for data in UNUSABLE.values():
        await queue.publish_raw(data)
    await queue.publish("echo", b"after")
    async with queue.worker():
        await eventually(lambda: gateway.calls_to("echo"), what="the valid call")
        await eventually(queue.drained, what="nothing left")
    dead = await queue.dead_letters()
    assert sorted(d.data for d in dead) == sorted(UNUSABLE.values())
    assert all(d.headers["Ferry-Attempts"] == "1" for d in dead)
    assert all(d.headers["Ferry-Dead-Reason"].startswith("undecodable: ") for d in dead)
    assert [c.body for c in gateway.calls] == [b"after"]  # nothing unusable was sent on


class _BrokenInvoker(Invoker):
    """An invoker that fails in a way the worker cannot foresee (a bug of ours)."""

    async def invoke(self, request: InvocationRequest, *, attempt: int = 1) -> InvocationResult:
        if request.function == "cursed":
            raise RuntimeError("an unforeseen fault")
        return await super().invoke(request, attempt=attempt)


async def test_an_unexpected_error_is_a_failed_attempt_and_ends_as_a_dead_letter(
    queue: QueueUnderTest, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.function("echo")
    caplog.set_level(logging.INFO, logger="ferry.queue_worker")
    async with queue.worker(max_retry_attempts="3") as worker:
        assert worker.calls is not None
        worker.calls.invoker = _BrokenInvoker(worker.gateway)
        call = await queue.publish("cursed", b"x")
        await queue.publish("echo", b"fine")
        await eventually(lambda: queue.dead_letters(), what="the dead letter")
        await eventually(queue.drained, what="nothing left")
    [dead] = await queue.dead_letters()
    assert dead.headers["Ferry-Attempts"] == "3"
    assert dead.headers["Ferry-Call-Id"] == call.call_id
    assert (
        "unexpected error: RuntimeError: 'an unforeseen fault'" in dead.headers["Ferry-Dead-Reason"]
    )
    about_it = [r for r in caplog.records if "unforeseen" in r.getMessage()]
    assert len(about_it) == 1 and about_it[0].exc_info is None  # one line, no traceback
