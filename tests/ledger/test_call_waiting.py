"""Why a queued call waits: with a real gateway and worker, `GET /system/calls/{id}` says
that its function is paused by hand or that its breaker is open (as the worker reported it to
the function-state bucket), and `GET /system/queues/{function}` shows the breaker."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from gateway.service import GatewayService
from tests.support.cli import ferry
from tests.support.front_door import gateway_env, running_gateway, write_functions
from tests.support.http import FakeGateway
from tests.support.ledger import LedgerUnderTest
from tests.support.ports import eventually, free_port
from tests.support.queue import QueueUnderTest


async def call(method: str, url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        return response.status, json.loads(await response.read() or b"null")


async def accept(front: GatewayService, name: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{front.url}/async-function/{name}", data=b"x") as response,
    ):
        assert response.status == 202
        return response.headers["X-Call-Id"]


async def waiting(front: GatewayService, call_id: str) -> str:
    """The entry's `waiting` while it is queued ("" until it is in the ledger and says so)."""
    status, found = await call("GET", f"{front.url}/system/calls/{call_id}")
    if status != 200 or found.get("state") != "queued":
        return ""
    return str(found.get("waiting", ""))


async def breaker_of(front: GatewayService, function: str) -> dict[str, Any]:
    status, found = await call("GET", f"{front.url}/system/queues/{function}")
    assert status == 200, found
    shown: dict[str, Any] = found["breaker"]
    return shown


async def test_a_queued_call_says_it_waits_for_an_open_breaker_or_a_pause(
    tmp_path: Path, queue: QueueUnderTest, gateway: FakeGateway, ledger: LedgerUnderTest
) -> None:
    gateway.function("echo")
    functions = {
        "down": {"url": f"http://127.0.0.1:{free_port()}"},  # nobody listens: refused
        "echo": {"url": f"{gateway.url}/function/echo"},
    }
    path = write_functions(tmp_path / "functions.yml", functions)
    bucket = {"function_state_bucket": f"fs-{uuid.uuid4().hex[:8]}"}
    env = gateway_env(queue, functions_file=str(path), **ledger.env(), **bucket)
    async with running_gateway(env) as front:
        assert await breaker_of(front, "down") == {"state": "closed"}
        worker_env = {
            "gateway_url": front.url,
            "breaker_failures": "2",
            "breaker_open_for": "60s",
            **ledger.env(),
            **bucket,
        }
        async with queue.worker(**worker_env) as worker:
            for _ in range(2):
                await accept(front, "down")
            await eventually(
                lambda: _state_is(front, "down", "open"), 15, what="the breaker reported open"
            )
            later = await accept(front, "down")
            why = await eventually(lambda: waiting(front, later), 10, what="why it waits")
            breaker = await breaker_of(front, "down")

            status, _ = await call("POST", f"{front.url}/system/queues/echo/pause")
            assert status == 200
            assert worker.fair is not None
            pauses = worker.fair.pauses
            await eventually(lambda: "echo" in pauses.names, 10, what="the worker paused")
            held = await accept(front, "echo")
            why_paused = await eventually(lambda: waiting(front, held), 10, what="the pause")
            cli_env = {"nats_url": queue.nats_url, **ledger.env(), **bucket}
            shown = await ferry("calls", "get", later, "--json", env=cli_env)
            await call("POST", f"{front.url}/system/queues/echo/resume")
            await eventually(lambda: len(gateway.calls_to("echo")) == 1, 10, what="echo ran")
            _, ran = await call("GET", f"{front.url}/system/calls/{held}")

    assert why.startswith("breaker open since "), why
    assert "2 consecutive availability failures" in why, why
    assert breaker["state"] == "open" and "availability failures" in breaker["reason"]
    assert why_paused.startswith("function paused by hand since "), why_paused
    assert "waiting" not in ran
    assert shown.status == 0, shown.stderr
    assert json.loads(shown.stdout)["waiting"].startswith("breaker open since ")


async def _state_is(front: GatewayService, function: str, state: str) -> bool:
    return bool((await breaker_of(front, function))["state"] == state)
