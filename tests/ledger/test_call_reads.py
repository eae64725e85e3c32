"""Reading a call through `ferry gateway`: its entry and stored answer, and who may read them."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from aiohttp import web
from yarl import URL

from gateway.service import GatewayService
from tests.support.calls import accept, request, state_is
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway, held_until
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually
from tests.support.queue import QueueUnderTest
from tests.support.wire import exchange


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
