"""Cancelling a call (/system/calls/{id}, Pro's /async-function/{id}): a 202 means it never runs."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

from aiohttp import web

from gateway.service import GatewayService
from tests.support.calls import accept, entry, request, state_is
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import CallbackReceiver, FakeGateway, held_until
from tests.support.large import live_objects, no_objects_left
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def test_a_cancel_before_the_ledger_saw_the_call_is_202_pending_and_it_never_runs(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    """A DELETE right after the 202 can come before the front door's `queued` entry lands
    (or for a call queued without one, as here): it cancels the call all the same."""
    gateway.function("never", lambda call: web.Response(text="ran"))
    request_ = await queue.publish("never", b"x")  # no entry: the ledger has not seen it
    status, body, _ = await request("DELETE", f"{front_door.url}/system/calls/{request_.call_id}")
    assert status == 202, body
    shown = json.loads(body)
    assert (shown["state"], shown["pending"]) == ("cancelled", True)
    async with queue.worker(**ledger.env()):
        await eventually(queue.drained, what="acked without a call")
    assert gateway.calls_to("never") == []
    assert (await entry(front_door, request_.call_id))["state"] == "cancelled"


async def test_a_queued_entry_landing_after_a_pending_cancel_does_not_revive_the_call(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    call_id = "late-entry-" + uuid.uuid4().hex
    status, _, _ = await request("DELETE", f"{front_door.url}/async-function/{call_id}")
    assert status == 202
    status, _, _ = await request(
        "POST", f"{front_door.url}/async-function/never", b"x", {"X-Call-Id": call_id}
    )
    assert status == 202
    async with queue.worker(**ledger.env()):
        await eventually(queue.drained, what="acked without a call")
    assert gateway.calls_to("never") == []
    assert (await entry(front_door, call_id))["state"] == "cancelled"


async def test_cancel_just_after_an_attempt_began_answers_409_and_the_call_runs_on(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    gateway.function("held", held_until(release, "ran", started=started))
    call_id = await accept(front_door, "held")
    await eventually(lambda: state_is(front_door, call_id, "queued"), what="queued")
    async with queue.worker(**ledger.env()):
        await started.wait()  # the attempt began; the worker has not written `running` yet
        cancel, body, _ = await request("DELETE", f"{front_door.url}/system/calls/{call_id}")
        release.set()
        done = await eventually(lambda: state_is(front_door, call_id, "succeeded"), what="done")
    assert cancel == 409, body
    assert b"running" in body
    assert done["attempts"] == 1


async def test_a_call_cancelled_while_queued_is_never_invoked_nor_called_back(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
    receiver: CallbackReceiver,
) -> None:
    gateway.function("never", lambda call: web.Response(text="ran"))
    cancelled = await accept(front_door, "never", receiver.url())
    await eventually(lambda: state_is(front_door, cancelled, "queued"), what="queued")
    status, body, _ = await request("DELETE", f"{front_door.url}/system/calls/{cancelled}")
    assert status == 202, body
    again, _, _ = await request("DELETE", f"{front_door.url}/async-function/{cancelled}")
    assert again == 409  # already final
    after = await accept(front_door, "never", receiver.url())
    async with queue.worker(**ledger.env()):
        await receiver.wait_for(1)  # the call after it ran and was called back
        await eventually(queue.drained, what="both acked")
    assert [call.headers["X-Call-Id"] for call in gateway.calls_to("never")] == [after]
    assert [cb.headers["X-Call-Id"] for cb in receiver.received] == [after]
    assert (await entry(front_door, cancelled))["state"] == "cancelled"
    assert await queue.dead_letters() == []


async def test_openfaas_pro_cancel_route_cancels_a_queued_call(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    gateway.function("never", lambda call: web.Response(text="ran"))
    call_id = await accept(front_door, "never")
    await eventually(lambda: state_is(front_door, call_id, "queued"), what="queued")
    status, _, _ = await request("DELETE", f"{front_door.url}/async-function/{call_id}")
    assert status == 202
    assert (await entry(front_door, call_id))["state"] == "cancelled"
    # a worker then takes the queue: the call after it runs, the cancelled one never does
    after = await accept(front_door, "never")
    async with queue.worker(**ledger.env()):
        await eventually(lambda: state_is(front_door, after, "succeeded"), what="the next call")
        await eventually(queue.drained, what="both messages acknowledged")
    assert [call.headers["X-Call-Id"] for call in gateway.calls_to("never")] == [after]
    assert (await entry(front_door, call_id))["state"] == "cancelled"


async def test_a_cancelled_call_with_a_large_body_is_never_invoked_and_leaves_no_object(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    bucket = f"bodies-{uuid.uuid4().hex[:8]}"
    gateway.function("never", lambda call: web.Response(text="ran"))
    path = write_functions(tmp_path / "f.yml", {"never": {"url": f"{gateway.url}/function/never"}})
    env = gateway_env(queue, functions_file=str(path), large_body_bucket=bucket, **ledger.env())
    async with running_gateway(env) as service:
        status, _, answer = await request(
            "POST", f"{service.url}/async-function/never", os.urandom(2 * 1024 * 1024)
        )
        assert status == 202
        call_id = answer["X-Call-Id"]
        assert len(await live_objects(queue, bucket)) == 1  # too large for one message
        await eventually(lambda: state_is(service, call_id, "queued"), what="queued")
        status, _, _ = await request("DELETE", f"{service.url}/system/calls/{call_id}")
        assert status == 202
        async with queue.worker(large_body_bucket=bucket, **ledger.env()):
            await eventually(queue.drained, what="acked")
    assert gateway.calls_to("never") == []
    await no_objects_left(queue, bucket)
