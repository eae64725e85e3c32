"""`ferry gateway`'s call routes in tests: accept a call, read its entry, wait for a state."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from gateway.service import GatewayService


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
