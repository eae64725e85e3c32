"""Delayed calls (X-Delay, X-Not-Before): stored in NATS as message schedules, run no earlier
than asked, within the tolerance after, whatever restarts; cancellable; bad values refused."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from nats.js import api as js_api

from asyncq.codec import encode
from asyncq.delayed import DELAY_TARGET, delayed_stream_name, delayed_subject
from asyncq.large_bodies import BODY_OBJECT, BodyStore
from asyncq.publisher import Publisher, build_request
from asyncq.schedule import schedule_subject, schedule_subjects, waiting_count
from asyncq.timing import NOT_BEFORE, CallTiming
from tests.support.brokers import NatsServer
from tests.support.cli import ferry
from tests.support.delayed import (  # noqa: F401  (`functions_file`)
    LATE_ALLOWED,
    echo_functions_file,
    post,
)
from tests.support.front_door import gateway_env, running_gateway
from tests.support.http import FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest, queue_on


async def waiting_schedules(queue: QueueUnderTest) -> int:
    info = await queue.js.stream_info(queue.stream, subjects_filter=schedule_subjects(queue.stream))
    return len(info.state.subjects or {})


async def test_x_delay_3s_runs_no_earlier_than_3s_and_within_the_tolerance_after(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    functions_file: Path,
    ledger: LedgerUnderTest,
) -> None:
    env = gateway_env(queue, functions_file=str(functions_file), **ledger.env())
    async with running_gateway(env) as gw, queue.worker(**ledger.env()):
        posted = time.monotonic()
        status, _, call_id = await post(f"{gw.url}/async-function/echo", {"X-Delay": "3s"})
        assert status == 202
        entry = await ledger.wait_for_state(call_id, "scheduled")
        assert entry.next_attempt_at is not None
        assert await waiting_schedules(queue) == 1  # held by NATS, not by the worker
        await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the delayed call")
        await ledger.wait_for_state(call_id, "succeeded")
    ran = gateway.calls_to("echo")[0].at - posted
    assert 3.0 <= ran <= 3.0 + LATE_ALLOWED
    assert "X-Delay" not in gateway.calls_to("echo")[0].headers  # asked of ferry, not passed on


async def test_a_delayed_call_survives_a_worker_restart_during_its_wait(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    request = build_request("echo", body=b"x")
    due = time.time() + 3
    async with queue.worker():
        await queue.publisher.enqueue(request, timing=CallTiming(not_before=due))
    assert not gateway.calls  # the first worker stopped before the call was due
    async with queue.worker():
        await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the delayed call")
        await eventually(queue.drained, what="acked")
    assert len(gateway.calls) == 1
    assert due <= time.time() - (time.monotonic() - gateway.calls[0].at)


async def test_a_delayed_call_survives_a_nats_restart_during_its_wait(
    gateway: FakeGateway,
) -> None:
    gateway.function("echo")
    server = NatsServer().start()
    try:
        async with queue_on(server.url, gateway.url) as queue, queue.worker():
            request = build_request("echo", body=b"x")
            due = time.time() + 3
            await queue.publisher.enqueue(request, timing=CallTiming(not_before=due))
            server.stop()  # the schedule lives only in the server's stored folder now
            server.start()  # the worker reconnects
            await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the call")
        called = time.time() - (time.monotonic() - gateway.calls[0].at)
        assert due <= called <= due + LATE_ALLOWED
        assert len(gateway.calls) == 1
    finally:
        server.cleanup()


async def test_many_waiting_delayed_calls_hold_no_worker_slot(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("later")
    gateway.function("now")
    due = time.time() + 5
    delayed = [build_request("later", body=b"x") for _ in range(1000)]
    async with queue.worker(max_inflight="1"):
        for start in range(0, len(delayed), 100):
            batch = delayed[start : start + 100]
            await asyncio.gather(
                *(queue.publisher.enqueue(r, timing=CallTiming(not_before=due)) for r in batch)
            )
        assert await waiting_count(queue.js, queue.stream) == 1000
        posted = time.monotonic()
        await queue.publish("now", b"x")
        await eventually(lambda: gateway.calls_to("now"), what="the undelayed call")
        assert gateway.calls_to("now")[0].at - posted < 2.0
        assert time.time() < due and not gateway.calls_to("later")
        await eventually(lambda: len(gateway.calls_to("later")) == 1000, timeout=60, what="all")


async def test_a_cancelled_scheduled_call_is_never_invoked(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    functions_file: Path,
    ledger: LedgerUnderTest,
) -> None:
    env = gateway_env(queue, functions_file=str(functions_file), **ledger.env())
    async with running_gateway(env) as gw, queue.worker(**ledger.env()):
        _, _, call_id = await post(f"{gw.url}/async-function/echo", {"X-Delay": "2s"})
        await ledger.wait_for_state(call_id, "scheduled")
        async with (
            aiohttp.ClientSession() as session,
            session.delete(f"{gw.url}/system/calls/{call_id}") as answer,
        ):
            assert answer.status == 202, await answer.text()
        assert await waiting_schedules(queue) == 0  # removed from the stream
        # a later call due after it: once it ran, the cancelled one would have run too
        _, _, later = await post(f"{gw.url}/async-function/echo", {"X-Delay": "2s"})
        await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the later call")
    assert [c.headers["X-Call-Id"] for c in gateway.calls] == [later]
    assert (await ledger.get(call_id)).state.value == "cancelled"  # type: ignore[union-attr]


async def test_a_delayed_call_without_a_ledger_entry_can_still_be_cancelled(
    queue: QueueUnderTest, functions_file: Path, ledger: LedgerUnderTest
) -> None:
    request = build_request("echo", body=b"x")  # stored by the publisher alone: no entry
    await queue.publisher.enqueue(request, timing=CallTiming(not_before=time.time() + 60))
    env = gateway_env(queue, functions_file=str(functions_file), **ledger.env())
    async with (
        running_gateway(env) as gw,
        aiohttp.ClientSession() as session,
        session.delete(f"{gw.url}/system/calls/{request.call_id}") as answer,
    ):
        assert answer.status == 202
        assert (await answer.json())["state"] == "cancelled"
    assert await waiting_schedules(queue) == 0


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"X-Delay": "-5s"}, "negative"),
        ({"X-Delay": "soon"}, "not a duration"),
        ({"X-Delay": "200h"}, "beyond max_delay"),
        ({"X-Not-Before": "tomorrow"}, "RFC 3339"),
        ({"X-Not-Before": "2030-01-01T00:00:00"}, "zone"),
        ({"X-Delay": "1s", "X-Not-Before": "1"}, "not both"),
        ({"X-Max-Age": "0s"}, "more than 0s"),
        ({"X-Expires-At": "2001-01-01T00:00:00Z"}, "could never run"),
    ],
)
async def test_bad_delay_or_expiry_values_are_a_400_with_the_reason_and_nothing_is_stored(
    queue: QueueUnderTest,
    functions_file: Path,
    ledger: LedgerUnderTest,
    headers: dict[str, str],
    reason: str,
) -> None:
    env = gateway_env(queue, functions_file=str(functions_file), **ledger.env())
    async with running_gateway(env) as gw:
        status, text, _ = await post(f"{gw.url}/async-function/echo", headers)
    assert status == 400
    assert reason in text
    assert await queue.stored() == 0
    assert await ledger.store.list() == []  # type: ignore[union-attr]


async def test_a_not_before_time_in_the_past_means_now(
    queue: QueueUnderTest, gateway: FakeGateway, functions_file: Path
) -> None:
    async with running_gateway(gateway_env(queue, functions_file=str(functions_file))) as gw:
        status, _, _ = await post(f"{gw.url}/async-function/echo", {"X-Not-Before": "1"})
    assert status == 202
    assert await waiting_schedules(queue) == 0 and await queue.stored() == 1


async def test_a_message_that_arrives_before_its_not_before_time_waits_without_a_slot(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    """What a copied or replayed message, or a server clock ahead of ours, would do."""
    gateway.function("echo")
    early = build_request("echo", body=b"early")
    due = time.time() + 2
    await queue.js.publish(queue.stream, encode(early), headers={NOT_BEFORE: str(int(due * 1e9))})
    async with queue.worker(max_inflight="1"):
        posted = time.monotonic()
        await queue.publish("echo", b"now")
        await eventually(lambda: gateway.calls_to("echo"), what="the undelayed call")
        assert gateway.calls[0].body == b"now" and gateway.calls[0].at - posted < 2.0
        await eventually(lambda: len(gateway.calls) == 2, timeout=30, what="the early one")
    called = time.time() - (time.monotonic() - gateway.calls[1].at)
    assert called >= due


async def test_ferry_publish_delay_stores_a_scheduled_call(
    queue: QueueUnderTest, ledger: LedgerUnderTest
) -> None:
    env = queue.env(**ledger.env())
    done = await ferry("publish", "echo", "--delay", "1h", env=env)
    assert done.status == 0, done.stderr
    call_id = done.stdout.strip()
    waiting = await queue.js.get_last_msg(queue.stream, schedule_subject(queue.stream, call_id))
    assert waiting.headers is not None and waiting.headers["Nats-Schedule"].startswith("@at ")
    entry = await ledger.wait_for_state(call_id, "scheduled")
    assert entry.next_attempt_at is not None
    cancelled = await ferry("calls", "cancel", call_id, env=env)
    assert cancelled.status == 0, cancelled.stderr
    assert await waiting_schedules(queue) == 0


async def test_ferry_publish_refuses_a_bad_delay_with_one_line(queue: QueueUnderTest) -> None:
    done = await ferry("publish", "echo", "--delay", "200h", env=queue.env())
    assert done.status == 2
    assert done.stderr.strip().count("\n") == 0 and "beyond max_delay" in done.stderr
    assert await queue.stored() == 0


async def test_a_delayed_call_with_a_large_body_fires_with_its_body_object(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    bucket = f"bodies-{uuid.uuid4().hex[:8]}"
    bodies = BodyStore(queue.js, bucket, ttl=3600.0)
    await bodies.ensure()
    publisher = Publisher(queue.js, queue.stream, bodies)
    body = os.urandom(2 * 1024 * 1024)
    request = build_request("echo", body=body)
    due = time.time() + 2
    await publisher.enqueue(request, timing=CallTiming(not_before=due))
    waiting = await queue.js.get_last_msg(
        queue.stream, schedule_subject(queue.stream, request.call_id)
    )
    assert waiting.headers is not None and BODY_OBJECT in waiting.headers
    async with queue.worker(large_body_bucket=bucket, max_response_bytes=str(8 * 1024 * 1024)):
        await eventually(lambda: gateway.calls_to("echo"), timeout=30, what="the delayed call")
    assert gateway.calls[0].body == body
    called = time.time() - (time.monotonic() - gateway.calls[0].at)
    assert called >= due


async def test_a_stream_without_schedules_takes_delayed_calls_on_the_delayed_stream(
    queue: QueueUnderTest, functions_file: Path
) -> None:
    """OpenFaaS Pro's stream holds the queue's subject: ferry serves it as it is, without
    message schedules, so a delayed call waits on ferry's own delayed stream instead
    (test_delayed_fallback.py); an undelayed one is taken as ever."""
    name = f"pro-{uuid.uuid4().hex[:8]}"
    await queue.js.add_stream(
        js_api.StreamConfig(
            name=f"OF_{name}",
            subjects=[name, f"{name}.*"],
            retention=js_api.RetentionPolicy.WORK_QUEUE,
        )
    )
    env = gateway_env(queue, functions_file=str(functions_file), nats_stream=name)
    async with running_gateway(env) as gw:
        status, text, call_id = await post(f"{gw.url}/async-function/echo", {"X-Delay": "5s"})
        assert status == 202, text
        status, _, _ = await post(f"{gw.url}/async-function/echo", {})
        assert status == 202
    info = await queue.js.stream_info(f"OF_{name}")
    assert info.state.messages == 1 and not info.config.allow_msg_schedules
    waiting = await queue.js.get_last_msg(
        delayed_stream_name(name), delayed_subject(delayed_stream_name(name), call_id)
    )
    assert waiting.headers is not None and waiting.headers[DELAY_TARGET] == name
