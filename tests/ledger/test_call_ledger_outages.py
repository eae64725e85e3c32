"""The call routes while the ledger bucket is gone, made again, or behind in a worker's watch."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from gateway.service import GatewayService
from tests.support.calls import accept, entry, request, state_is
from tests.support.http import FakeGateway, held_until
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest


async def test_with_the_bucket_deleted_every_route_is_503_not_unknown(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    gateway.function("echo", lambda call: web.Response(text="ok"))
    call_id = await accept(front_door, "echo")
    async with queue.worker(**ledger.env()):
        await eventually(lambda: state_is(front_door, call_id, "succeeded"), what="done")
    await ledger.close()  # deletes the bucket: the ledger cannot say what became of the call
    for method, path in (
        ("GET", f"/system/calls/{call_id}"),
        ("GET", f"/system/calls/{call_id}/result"),
        ("DELETE", f"/system/calls/{call_id}"),
    ):
        status, body, _ = await request(method, front_door.url + path)
        assert status == 503, (method, path, body)
        assert b"call ledger unavailable" in body


async def test_after_the_bucket_is_made_again_a_202_cancel_still_means_the_call_never_runs(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    """nats-py's watch on a deleted bucket resumes past the new bucket's first markers: the
    worker must notice the bucket is new and read them, and the cancel must wait for it."""
    started, release = asyncio.Event(), asyncio.Event()
    gateway.function("held", held_until(release, "ran", started=started))
    gateway.function("never", lambda call: web.Response(text="ran"))
    async with queue.worker(**ledger.env(max_inflight="1")):
        first = await accept(front_door, "held")
        await started.wait()  # the worker is busy: the next call waits in the stream
        await ledger.close()
        await ledger.setup()  # the bucket, deleted and made again
        cancelled = await accept(front_door, "never")
        await eventually(lambda: state_is(front_door, cancelled, "queued"), what="queued")
        status, body, _ = await request("DELETE", f"{front_door.url}/system/calls/{cancelled}")
        release.set()
        await eventually(lambda: state_is(front_door, first, "succeeded"), what="first done")
        await eventually(queue.drained, what="both acked")
    assert status == 202, body
    assert gateway.calls_to("never") == []
    assert (await entry(front_door, cancelled))["state"] == "cancelled"


async def test_a_cancel_a_worker_has_not_been_handed_is_never_202(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    """A worker whose watch lags (here: its consumer paused) may run the call: the cancel
    answers 503, not 202, and the entry ends saying what happened."""
    started, release = asyncio.Event(), asyncio.Event()
    gateway.function("held", held_until(release, "ran", started=started))
    gateway.function("echo", lambda call: web.Response(text="ran"))
    async with queue.worker(**ledger.env(max_inflight="1")):
        await accept(front_door, "held")
        await started.wait()  # the worker is busy: the next call waits in the stream
        later = await accept(front_door, "echo")
        await eventually(lambda: state_is(front_door, later, "queued"), what="queued")
        stream = f"KV_{ledger.bucket}"
        (watch,) = [c for c in await queue.js.consumers_info(stream) if c.push_bound]
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
        await queue.js.pause_consumer(stream, watch.name, until)
        status, body, _ = await request("DELETE", f"{front_door.url}/system/calls/{later}")
        release.set()
        await eventually(queue.drained, what="both acked")
        ran = bool(gateway.calls_to("echo"))
        if ran:  # the worker's final write leaves after the ack (it gathers for a few ms)
            await eventually(lambda: state_is(front_door, later, "succeeded"), what="succeeded")
        final = await entry(front_door, later)
    assert status == 503, body
    assert final["state"] == ("succeeded" if ran else "cancelled")
