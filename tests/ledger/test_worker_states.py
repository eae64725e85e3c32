"""The queue worker records each call's state; the ledger never costs a call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from asyncq.publisher import build_request
from ledger.entries import CallEntry, CallState
from ledger.settings import CallLedgerSettings
from ledger.writer import HOLD_SECONDS
from queue_worker.worker_ledger import WorkerLedger
from tests.support.http import CallbackReceiver, FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def test_a_call_run_by_the_worker_ends_succeeded_with_its_answer_stored(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function(
        "echo", lambda call: web.Response(body=b"\x00hi\xff", content_type="application/x-demo")
    )
    request = await queue.publish("echo", b"x")
    async with queue.worker(**ledger.env()) as worker:
        entry = await ledger.wait_for_state(request.call_id, "succeeded")
        counted = worker.registry.get_sample_value(
            "queue_worker_call_ledger_states_total", {"state": "succeeded"}
        )
    assert counted == 1
    assert (entry.attempts, entry.status, entry.function) == (1, 200, "echo")
    assert entry.result is not None and entry.result_stored
    assert entry.result.body == b"\x00hi\xff"
    assert entry.result.content_type == "application/x-demo"
    assert entry.queued_at and entry.started_at and entry.finished_at
    assert ledger.states[request.call_id][-1] == "succeeded"


async def test_a_message_published_straight_to_the_stream_gets_an_entry(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("fn", lambda call: web.Response(text="ok"))
    request = await queue.publish("fn", b"x")  # the publisher alone: no front door, no entry
    assert await ledger.get(request.call_id) is None
    async with queue.worker(**ledger.env()):
        await ledger.wait_for_state(request.call_id, "succeeded")


async def test_failing_twice_then_succeeding_shows_retrying_and_ends_with_three_attempts(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    statuses = iter([500, 500])
    gateway.function("flaky", lambda call: web.Response(status=next(statuses, 200)))
    request = await queue.publish("flaky", b"x")
    async with queue.worker(**ledger.env(initial_retry_wait="300ms", max_retry_wait="300ms")):
        entry = await ledger.wait_for_state(request.call_id, "succeeded")
    assert (entry.attempts, entry.status) == (3, 200)
    seen = ledger.states[request.call_id]
    assert "retrying" in seen and seen.index("retrying") < seen.index("succeeded")


async def test_always_failing_ends_failed_after_max_attempts_and_is_still_dead_lettered(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("broken", lambda call: web.Response(status=500, text="boom"))
    request = await queue.publish("broken", b"x")
    async with queue.worker(**ledger.env(max_retry_attempts="3")):
        entry = await ledger.wait_for_state(request.call_id, "failed")
        await eventually(queue.dead_letters, what="the dead letter")
    assert (entry.attempts, entry.status) == (3, 500)
    assert entry.result is not None and entry.result.body == b"boom"


async def test_an_answer_over_call_result_max_bytes_is_marked_not_stored(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("big", lambda call: web.Response(body=b"y" * 2000))
    request = await queue.publish("big", b"x")
    async with queue.worker(**ledger.env(call_result_max_bytes="1000")):
        entry = await ledger.wait_for_state(request.call_id, "succeeded")
    assert not entry.result_stored and entry.result is None
    assert entry.result_bytes == 2000


async def test_calls_run_and_failed_writes_are_counted_when_the_bucket_is_gone(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("fn", lambda call: web.Response(text="ok"))
    async with queue.worker(**ledger.env()) as worker:
        await ledger.close()  # the bucket is deleted under the running worker
        for _ in range(3):
            await queue.publish("fn", b"x")
        await eventually(lambda: len(gateway.calls_to("fn")) == 3, what="three calls")
        name = "queue_worker_call_ledger_write_failures_total"
        # at least the final state of each call
        await eventually(
            lambda: (worker.registry.get_sample_value(name) or 0) >= 3, what="failures counted"
        )
    await eventually(queue.drained, what="every call acked")


async def test_call_ledger_false_writes_nothing(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("fn", lambda call: web.Response(text="ok"))
    request = await queue.publish("fn", b"x")
    async with queue.worker(**ledger.env(call_ledger="false")):
        await eventually(lambda: gateway.calls_to("fn"), what="the call")
        await eventually(queue.drained, what="acked")
    assert await ledger.get(request.call_id) is None


STOPPED = "queue-worker stopped: task ledger-cancels"


async def test_a_ledger_task_that_ends_ends_the_worker_instead_of_silently_stopping_the_ledger(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest, caplog: Any
) -> None:
    gateway.function("fn", lambda call: web.Response(text="ok"))
    with pytest.raises(AssertionError):  # the block's end finds the worker exited 1, not 0
        async with queue.worker(**ledger.env()) as worker:
            (watch, *_) = worker.ledger.tasks
            watch.cancel()  # as if the cancel watch had died
            await queue.publish("fn", b"x")  # the pull loop wakes and looks
            await eventually(lambda: STOPPED in caplog.text, what="the worker stopping on it")
    assert STOPPED in caplog.text


async def test_running_is_written_for_an_attempt_that_outlasts_the_hold(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    async def slow(call: Any) -> web.Response:
        await asyncio.sleep(1.0)  # well past the 50 ms hold
        return web.Response(text="slow")

    gateway.function("quick", lambda call: web.Response(text="quick"))
    gateway.function("slow", slow)
    quick = [await queue.publish("quick", b"x") for _ in range(5)]
    late = await queue.publish("slow", b"x")
    async with queue.worker(**ledger.env()) as worker:
        for request in [*quick, late]:
            await ledger.wait_for_state(request.call_id, "succeeded")
        counted = worker.registry.get_sample_value(
            "queue_worker_call_ledger_states_total", {"state": "running"}
        )
    assert counted == 6  # every attempt counted as it began, written or not
    assert ledger.states[late.call_id] == ["running", "succeeded"]


async def test_an_attempt_that_ends_expired_never_shows_running_afterwards(
    queue: QueueUnderTest, ledger: LedgerUnderTest
) -> None:
    """A retry not made because the call expired ends with `expired`, not `failed`: the
    `running` noted when the attempt began must not be written after it."""
    settings = CallLedgerSettings(call_ledger_bucket=ledger.bucket)
    hooks = WorkerLedger(settings, CollectorRegistry(), replicas=1)
    await hooks.start(queue.nc, queue.js)
    try:
        request = build_request("fn", body=b"x")
        hooks.running(request, 1)
        hooks.expired(request, 1, "expired before its retry")
        await asyncio.sleep(3 * HOLD_SECONDS)  # past the hold: a stale `running` would be out
        await eventually(lambda: ledger.states.get(request.call_id), what="the entry")
        entry = await ledger.get(request.call_id)
        assert entry is not None and entry.state is CallState.EXPIRED
        assert ledger.states[request.call_id] == ["expired"]
    finally:
        await hooks.close()


async def test_a_final_state_shows_at_once_while_its_callback_is_under_way(
    queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest, receiver: CallbackReceiver
) -> None:
    """A callback that outlasts the hold: the call reads as finished meanwhile, its callback's
    outcome `pending`, then `delivered` once it lands; one write each."""
    gateway.function("echo", lambda call: web.Response(text="hi"))
    receiver.hold = asyncio.Event()
    request = await queue.publish("echo", b"x", callback_url=receiver.url())
    async with queue.worker(**ledger.env()):
        await receiver.wait_for(1)  # the callback is under way, held by the receiver

        async def pending() -> CallEntry | None:
            entry = await ledger.get(request.call_id)
            return entry if entry is not None and entry.callback_outcome == "pending" else None

        shown = await eventually(pending, what="the final state, callback pending")
        assert shown.state is CallState.SUCCEEDED and shown.result_stored
        receiver.hold.set()
        await eventually(
            lambda: ("succeeded", "delivered") in ledger.written.get(request.call_id, []),
            what="the callback's outcome",
        )
    assert ledger.written[request.call_id] == [
        ("succeeded", "pending"),
        ("succeeded", "delivered"),
    ]
