"""The example functions `ferry dev` serves: an echo, a slow one, and one that fails twice.

They are plain HTTP handlers (any HTTP service can be a function in standalone mode), so the
newcomer sees a call succeed, a call take time, and a call be retried before it succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from aiohttp import web

FLAKY_FAILURES = 2
SLOW_DEFAULT_SECONDS = 3.0
SLOW_MAX_SECONDS = 60.0


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    content_type = request.headers.get("Content-Type", "text/plain")
    return web.Response(body=body, headers={"Content-Type": content_type})


async def slow(request: web.Request) -> web.Response:
    try:
        seconds = float(request.query.get("seconds", SLOW_DEFAULT_SECONDS))
    except ValueError:
        return web.Response(status=400, text="seconds must be a number\n")
    seconds = min(max(seconds, 0.0), SLOW_MAX_SECONDS)
    await asyncio.sleep(seconds)
    return web.Response(text=f"slept {seconds:g}s\n")


class Flaky:
    """Answers 500 to the first two attempts of each call id, then 200."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {}

    async def __call__(self, request: web.Request) -> web.Response:
        await request.read()
        call_id = request.headers.get("X-Call-Id", "")
        if len(self.attempts) > 10_000:
            self.attempts.clear()
        attempt = self.attempts.get(call_id, 0) + 1
        self.attempts[call_id] = attempt
        if attempt <= FLAKY_FAILURES:
            return web.Response(status=500, text=f"failing on purpose (attempt {attempt})\n")
        return web.Response(text=f"succeeded on attempt {attempt}\n")


async def tick(request: web.Request) -> web.Response:
    """Called by the cron connector: says which slot it was called for."""
    await request.read()
    slot = request.headers.get("X-Cron-Scheduled-Time", "?")
    return web.Response(text=f"tick for the slot at {slot}\n")


def example_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/echo{tail:.*}", echo)
    app.router.add_route("*", "/slow{tail:.*}", slow)
    app.router.add_route("*", "/flaky{tail:.*}", Flaky())
    app.router.add_route("*", "/tick{tail:.*}", tick)
    return app


def example_functions(base_url: str) -> Mapping[str, Any]:
    """The functions file that lists the examples (what `functions_file` reads)."""
    return {
        "functions": [
            {"name": "echo", "url": f"{base_url}/echo", "labels": {"example": "true"}},
            {"name": "slow", "url": f"{base_url}/slow", "labels": {"example": "true"}},
            {
                "name": "flaky",
                "url": f"{base_url}/flaky",
                "labels": {"example": "true"},
                "annotations": {"com.openfaas.retry.attempts": "5"},
            },
            {
                "name": "tick",
                "url": f"{base_url}/tick",
                "labels": {"example": "true"},
                "annotations": {"topic": "cron-function", "schedule": "* * * * *"},
            },
        ]
    }
