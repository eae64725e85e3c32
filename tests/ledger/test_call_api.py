"""`ferry gateway`'s call routes: a call's entry, its stored answer, and cancelling it."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from gateway.service import GatewayService
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import CallbackReceiver, FakeGateway, held_until
from tests.support.large import live_objects, no_objects_left
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest
from tests.support.wire import exchange

FUNCTIONS = ("echo", "held", "big", "never")


@pytest.fixture
async def front_door(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> AsyncIterator[GatewayService]:
    functions = {name: {"url": f"{gateway.url}/function/{name}"} for name in FUNCTIONS}
    path = write_functions(tmp_path / "functions.yml", functions)
    env = gateway_env(queue, functions_file=str(path), **ledger.env())
    async with running_gateway(env) as service:
        yield service


async def request(
    method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body, headers=headers) as response,
    ):
        return response.status, await response.read(), dict(response.headers)


async def accept(front_door: GatewayService, name: str, callback: str = "") -> str:
    headers = {"X-Callback-Url": callback} if callback else {}
    status, _, answer = await request(
        "POST", f"{front_door.url}/async-function/{name}", b"x", headers
    )
    assert status == 202
    return answer["X-Call-Id"]


async def entry(front_door: GatewayService, call_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{front_door.url}/system/calls/{call_id}") as response,
    ):
        assert response.status == 200
        found: dict[str, Any] = await response.json()
        return found


async def state_is(front_door: GatewayService, call_id: str, state: str) -> dict[str, Any] | None:
    """The entry once it is in `state`; None before (the `queued` write is not awaited, so
    the entry may be missing for a moment after the 202)."""
    status, body, _ = await request("GET", f"{front_door.url}/system/calls/{call_id}")
    assert status in (200, 404), body
    found: dict[str, Any] = json.loads(body) if status == 200 else {}
    return found if found.get("state") == state else None


async def test_an_accepted_call_is_queued_then_succeeded_and_its_answer_reads_back_exactly(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    answer = bytes(range(256))
    gateway.function(
        "echo", lambda call: web.Response(body=answer, content_type="application/x-bytes")
    )
    call_id = await accept(front_door, "echo")
    queued = await eventually(lambda: state_is(front_door, call_id, "queued"), what="queued")
    assert (queued["function"], queued["attempts"], queued["status"]) == ("echo", 0, None)
    async with queue.worker(**ledger.env()):
        done = await eventually(lambda: state_is(front_door, call_id, "succeeded"), what="done")
    assert (done["attempts"], done["status"], done["result_stored"]) == (1, 200, True)
    status, body, headers = await request("GET", f"{front_door.url}/system/calls/{call_id}/result")
    assert status == 200
    assert body == answer
    assert headers["Content-Type"] == "application/x-bytes"
    assert headers["X-Function-Status"] == "200"
    assert headers["X-Call-Id"] == call_id
    assert float(headers["X-Duration-Seconds"]) >= 0


async def test_an_unknown_call_id_is_404_to_read(front_door: GatewayService) -> None:
    base = front_door.url
    for path in ("/system/calls/no-such-call", "/system/calls/no-such-call/result"):
        status, body, headers = await request("GET", base + path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("application/json")
        assert b"no-such-call" in body


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


async def test_a_running_call_answers_409_to_its_result_and_to_cancel(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    release = asyncio.Event()
    gateway.function("held", held_until(release))
    call_id = await accept(front_door, "held")
    async with queue.worker(**ledger.env()):
        await eventually(lambda: state_is(front_door, call_id, "running"), what="running")
        result, _, _ = await request("GET", f"{front_door.url}/system/calls/{call_id}/result")
        cancel, _, _ = await request("DELETE", f"{front_door.url}/system/calls/{call_id}")
        release.set()
        await eventually(lambda: state_is(front_door, call_id, "succeeded"), what="done")
    assert (result, cancel) == (409, 409)


async def test_cancel_just_after_an_attempt_began_answers_409_and_the_call_runs_on(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def held(call: object) -> web.Response:
        started.set()
        await release.wait()
        return web.Response(text="ran")

    gateway.function("held", held)
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


async def test_an_answer_over_call_result_max_bytes_is_410(
    queue: QueueUnderTest,
    gateway: FakeGateway,
    ledger: LedgerUnderTest,
    front_door: GatewayService,
) -> None:
    gateway.function("big", lambda call: web.Response(body=b"z" * 5000))
    call_id = await accept(front_door, "big")
    async with queue.worker(**ledger.env(call_result_max_bytes="4096")):
        await eventually(lambda: state_is(front_door, call_id, "succeeded"), what="done")
    status, _, _ = await request("GET", f"{front_door.url}/system/calls/{call_id}/result")
    assert status == 410


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


async def test_with_basic_auth_the_call_routes_need_the_gateway_credentials(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "basic-auth-user").write_text("admin")
    (secrets / "basic-auth-password").write_text("s3cret")
    path = write_functions(tmp_path / "f.yml", {"echo": {"url": f"{gateway.url}/function/echo"}})
    env = gateway_env(
        queue,
        functions_file=str(path),
        basic_auth="true",
        secret_mount_path=str(secrets),
        **ledger.env(),
    )
    async with running_gateway(env) as service:
        call_id = await accept(service, "echo")
        url = f"{service.url}/system/calls/{call_id}"
        anonymous, _, _ = await request("GET", url)
        wrong, _, _ = await request("DELETE", url, headers={"Authorization": "Basic eDp5"})
        good = "Basic " + base64.b64encode(b"admin:s3cret").decode()
        allowed, _, _ = await request("GET", url, headers={"Authorization": good})
        raw = b"GET /system/calls/x HTTP/1.1\r\nHost: a\r\nAuthorization: Basic \xff\xfe\r\n\r\n"
        not_utf8, _, _ = await exchange(URL(service.url).port or 0, raw)  # bytes, not text
    assert (anonymous, wrong, allowed) == (401, 401, 200)
    assert not_utf8 == 401


async def test_a_long_client_chosen_call_id_is_found_under_its_hashed_key(
    ledger: LedgerUnderTest, front_door: GatewayService
) -> None:
    call_id = "order:" + "7" * 122  # 128 characters, the longest the front door takes
    status, _, headers = await request(
        "POST", f"{front_door.url}/async-function/never", b"x", {"X-Call-Id": call_id}
    )
    assert (status, headers["X-Call-Id"]) == (202, call_id)
    found = await eventually(lambda: state_is(front_door, call_id, "queued"), what="queued")
    assert found["call_id"] == call_id
    assert ledger.key(call_id).startswith("call.=")


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

    async def held(call: object) -> web.Response:
        started.set()
        await release.wait()
        return web.Response(text="ran")

    gateway.function("held", held)
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

    async def held(call: object) -> web.Response:
        started.set()
        await release.wait()
        return web.Response(text="ran")

    gateway.function("held", held)
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
