"""`/system/queues/{function}` on the gateway: read, pause and resume a function's queued
calls, behind the gateway's credentials in standalone and proxy mode alike."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.cli import ferry
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.queue import QueueUnderTest

GOOD = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}


async def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, url, headers=headers) as got:
        return got.status, await got.json(content_type=None)


@pytest.mark.parametrize("mode", ["standalone", "proxy"])
async def test_pause_and_resume_through_the_gateway_need_its_credentials(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway, mode: str
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "basic-auth-user").write_text("admin")
    (secrets / "basic-auth-password").write_text("s3cret")
    bucket = f"fs-{uuid.uuid4().hex[:8]}"
    where: dict[str, str] = {"upstream_url": gateway.url}
    if mode == "standalone":
        path = write_functions(tmp_path / "f.yml", {"echo": {"url": f"{gateway.url}/f/echo"}})
        where = {"functions_file": str(path)}
    env = gateway_env(
        queue,
        basic_auth="true",
        secret_mount_path=str(secrets),
        function_state_bucket=bucket,
        **where,
    )
    cli_env = {"nats_url": queue.nats_url, "function_state_bucket": bucket}
    async with running_gateway(env) as service:
        url = f"{service.url}/system/queues/echo"
        anonymous_pause, _ = await call("POST", f"{url}/pause")
        anonymous_read, _ = await call("GET", url, {"Authorization": "Basic eDp5"})
        not_paused = await ferry("functions", "list", "--json", env=cli_env)
        paused = await call("POST", f"{url}/pause", GOOD)
        read = await call("GET", url, GOOD)
        listed = await ferry("functions", "list", env=cli_env)
        anonymous_resume, _ = await call("POST", f"{url}/resume")
        still = await call("GET", url, GOOD)
        resumed = await call("POST", f"{url}/resume", GOOD)
    assert (anonymous_pause, anonymous_read, anonymous_resume) == (401, 401, 401)
    assert not_paused.stdout.strip() == "[]"
    assert paused[0] == 200 and paused[1]["paused"] is True and paused[1]["paused_by"] == "gateway"
    assert read == (200, paused[1])
    assert "echo" in listed.stdout  # the same store as the shell command's
    assert still[1]["paused"] is True
    assert resumed == (200, {"function": "echo", "paused": False, "breaker": {"state": "closed"}})
