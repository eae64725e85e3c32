"""Reliability round 3, item 8: with `basic_auth=true` every `/system` route of `ferry gateway`
asks for the gateway's credentials, as OpenFaaS does, on whichever path a request arrives by;
with `basic_auth=false` the gateway says at start-up what answers anyone."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from gateway.service import GatewayService
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.ports import eventually
from tests.support.procs import FerryProcess
from tests.support.queue import QueueUnderTest
from tests.support.wire import raw_wire

GOOD = "Basic " + base64.b64encode(b"admin:s3cret").decode()
WRONG = "Basic " + base64.b64encode(b"admin:guess").decode()
SYSTEM_ROUTES = [
    ("GET", "/system/functions"),
    ("GET", "/system/functions?namespace=openfaas-fn"),
    ("GET", "/system/function/echo"),
    ("GET", "/system/namespaces"),
    ("GET", "/system/namespace/openfaas-fn"),
    ("GET", "/system/info"),
    ("POST", "/system/functions"),
    ("GET", "/system/secrets"),
    ("GET", "/system/logs?name=echo"),
    ("GET", "/system/no-such-route"),
    ("GET", "//system/functions"),
]


def secrets_in(folder: Path) -> Path:
    folder.mkdir()
    (folder / "basic-auth-user").write_text("admin")
    (folder / "basic-auth-password").write_text("s3cret\n")
    return folder


@pytest.fixture
async def guarded(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway
) -> AsyncIterator[GatewayService]:
    gateway.function("echo")
    path = write_functions(tmp_path / "f.yml", {"echo": {"url": f"{gateway.url}/function/echo"}})
    env = gateway_env(
        queue,
        functions_file=str(path),
        basic_auth="true",
        secret_mount_path=str(secrets_in(tmp_path / "secrets")),
    )
    async with running_gateway(env) as service:
        yield service


async def status_of(url: str, method: str, headers: dict[str, str] | None = None) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, headers=headers) as response,
    ):
        return response.status


@pytest.mark.parametrize(("method", "path"), SYSTEM_ROUTES)
async def test_every_system_route_refuses_callers_without_the_credentials(
    guarded: GatewayService, method: str, path: str
) -> None:
    url = guarded.url + path
    assert await status_of(url, method) == 401
    assert await status_of(url, method, {"Authorization": WRONG}) == 401
    assert await status_of(url, method, {"Authorization": "Bearer " + GOOD[6:]}) == 401
    assert await status_of(url, method, {"Authorization": GOOD}) != 401


async def test_the_answer_to_a_caller_without_credentials_asks_for_basic_auth(
    guarded: GatewayService,
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{guarded.url}/system/functions") as response,
    ):
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        assert "echo" not in await response.text()
    # as on OpenFaaS, functions and the health check stay open
    assert await status_of(f"{guarded.url}/function/echo", "POST") == 200
    assert await status_of(f"{guarded.url}/healthz", "GET") == 200


async def test_a_system_request_after_a_lean_call_on_one_connection_is_refused(
    guarded: GatewayService,
) -> None:
    """The lean listener serves `/function/` itself and hands the connection to aiohttp at
    the first `/system` request: the credentials are asked for there too."""
    port = URL(guarded.url).port or 0
    async with raw_wire(port) as wire:
        await wire.send(b"POST /function/echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
        first, _, _ = await wire.answer_head()
        await wire.send(b"GET /system/functions HTTP/1.1\r\nHost: a\r\n\r\n")
        second, _, body = await wire.answer_head()
    assert first.split()[1] == "200"
    assert second.split()[1] == "401"
    assert b"echo" not in body


async def test_without_basic_auth_the_gateway_says_at_start_up_what_answers_anyone(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway
) -> None:
    upstream = gateway_env(queue, upstream_url=gateway.url)
    proc = await FerryProcess("gateway", upstream).start()
    try:
        await eventually(lambda: "front door on port" in proc.output(), what="start-up")
        assert await proc.stop() == 0
        output = proc.output()
    finally:
        await proc.close()
    (line,) = [line for line in output.splitlines() if "basic_auth=false" in line]
    assert "WARNING" in line
    assert "/system/calls/{id}" in line and "DELETE /async-function/{id}" in line
    assert "basic_auth=true" in line and "secret_mount_path" in line
