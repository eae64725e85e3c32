"""Expiry (X-Max-Age, X-Expires-At, ferry.max_age, max_event_age): a stale call is never
invoked; it is dead-lettered `expired`, called back once with 410, and its ledger says so."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from asyncq.publisher import build_request
from asyncq.timing import CallTiming
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import CallbackReceiver, FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


@pytest.fixture
def functions_file(tmp_path: Path, gateway: FakeGateway) -> Path:
    return write_functions(
        tmp_path / "functions.yml",
        {
            "quote": {"url": f"{gateway.url}/x"},
            "fresh": {"url": f"{gateway.url}/x", "annotations": {"ferry.max_age": "1s"}},
        },
    )


async def post(url: str, headers: dict[str, str]) -> str:
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as answer:
        assert answer.status == 202, await answer.text()
        return answer.headers["X-Call-Id"]


async def test_a_call_past_its_max_age_while_no_worker_ran_is_never_invoked(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    receiver: CallbackReceiver,
    functions_file: Path,
    ledger: LedgerUnderTest,
) -> None:
    gateway.function("quote")
    env = gateway_env(queue, functions_file=str(functions_file), **ledger.env())
    async with running_gateway(env) as gw:
        headers = {"X-Max-Age": "2s", "X-Callback-Url": receiver.url()}
        call_id = await post(f"{gw.url}/async-function/quote", headers)
    await asyncio.sleep(5)  # the outage: no worker runs
    async with queue.worker(**ledger.env()) as worker:
        entry = await ledger.wait_for_state(call_id, "expired")
        letters = await eventually(queue.dead_letters, what="the dead letter")
        await eventually(lambda: receiver.received, what="the callback")
        await eventually(queue.drained, what="acked")
        expired = worker.registry.get_sample_value(
            "queue_worker_calls_expired_total", {"function": "quote"}
        )
    assert not gateway.calls
    assert letters[0].headers["Ferry-Dead-Reason"].startswith("expired at ")
    assert len(receiver.received) == 1
    callback = receiver.received[0].headers
    assert callback["X-Function-Status"] == "410"
    assert callback["X-Ferry-Error"].startswith("expired at ")
    assert entry.status == 410 and entry.error and "X-Max-Age" in entry.error
    assert expired == 1


async def test_retries_stop_at_the_expiry(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    receiver: CallbackReceiver,
    ledger: LedgerUnderTest,
) -> None:
    # 500: retried, and a function's own error, so the circuit breaker (which 503s would open
    # after five in a row, holding the call past its expiry) stays out of this test
    gateway.function("quote", lambda call: web.Response(status=500))
    started, posted = time.time(), time.monotonic()
    request = build_request("quote", body=b"x", callback_url=receiver.url())
    await queue.publisher.enqueue(request, timing=CallTiming(expires_at=started + 1.5))
    retry = {"initial_retry_wait": "400ms", "max_retry_wait": "400ms", "max_retry_attempts": "50"}
    async with queue.worker(**ledger.env(**retry)):
        entry = await ledger.wait_for_state(request.call_id, "expired")
        letters = await eventually(queue.dead_letters, what="the dead letter")
        await eventually(lambda: receiver.received, what="the callback")
        await eventually(queue.drained, what="acked")
    expiry = posted + 1.5
    assert 1 <= len(gateway.calls) < 50
    assert all(call.at < expiry for call in gateway.calls)  # no attempt after the expiry
    # Either the retry that would come after the expiry is not made ("not retried", the last
    # status kept), or the retried message is taken after the expiry and not invoked: which one
    # depends on the jittered back-off and on when the function's lane pulls it again.
    reason = letters[0].headers["Ferry-Dead-Reason"]
    assert reason.startswith("expired"), reason
    if "not retried" in reason:
        assert letters[0].headers["Ferry-Last-Status"] == "500"
    assert len(receiver.received) == 1
    assert receiver.received[0].headers["X-Function-Status"] == "410"
    assert entry.state.value == "expired"


async def test_the_annotation_ferry_max_age_expires_a_call_of_that_function(
    queue: QueueUnderTest, gateway: FakeGateway, functions_file: Path, ledger: LedgerUnderTest
) -> None:
    gateway.function("fresh")
    env = gateway_env(queue, functions_file=str(functions_file), **ledger.env())
    async with running_gateway(env) as gw:
        stale = await post(f"{gw.url}/async-function/fresh", {})
        await asyncio.sleep(1.5)
        async with queue.worker(**ledger.env()):
            await ledger.wait_for_state(stale, "expired")
            fresh = await post(f"{gw.url}/async-function/fresh", {})
            await ledger.wait_for_state(fresh, "succeeded")
    assert [c.headers["X-Call-Id"] for c in gateway.calls] == [fresh]


async def test_max_event_age_expires_old_calls_and_leaves_fresh_ones(
    queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    gateway.function("echo")
    old = str(time.time_ns() - 60 * 10**9)
    await queue.publish("echo", b"old", headers=[("X-Start-Time", old)])
    await queue.publish("echo", b"new")
    async with queue.worker(max_event_age="30s"):
        await eventually(lambda: gateway.calls, what="the fresh call")
        letters = await eventually(queue.dead_letters, what="the stale call's dead letter")
        await eventually(queue.drained, what="both acked")
    assert [c.body for c in gateway.calls] == [b"new"]
    assert "max_event_age 30s" in letters[0].headers["Ferry-Dead-Reason"]


async def test_a_delayed_calls_max_age_counts_from_when_it_is_due(
    queue: QueueUnderTest, gateway: FakeGateway, functions_file: Path, ledger: LedgerUnderTest
) -> None:
    gateway.function("quote")
    env = gateway_env(queue, functions_file=str(functions_file), **ledger.env())
    async with running_gateway(env) as gw, queue.worker(**ledger.env()):
        call_id = await post(f"{gw.url}/async-function/quote", {"X-Delay": "2s", "X-Max-Age": "2s"})
        await ledger.wait_for_state(call_id, "succeeded")
    assert len(gateway.calls) == 1
