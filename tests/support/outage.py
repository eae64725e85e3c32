"""A function that is down, then up again: a real HTTP server on a fixed loopback port, not
listening at first (connection refused), reached through the fake gateway, which answers 502
when the function cannot be reached, as the OpenFaaS gateway does."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from tests.support.http import Call, Handler
from tests.support.ports import free_port


class DownFunction:
    def __init__(self) -> None:
        self.port = free_port()
        self.tried = 0  # calls the gateway tried to pass on, reached or not
        self.received: list[bytes] = []  # bodies the function itself received, in order
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def up(self) -> None:
        """Start listening on the port the gateway has been failing to reach."""
        app = web.Application()
        app.router.add_post("/", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        self.received.append(await request.read())
        return web.Response(text="ok")

    def handler(self) -> Handler:
        """The gateway's side: pass the call on; 502 when the function refuses the connection."""

        async def proxy(call: Call) -> web.Response:
            self.tried += 1
            if self._session is None:
                self._session = aiohttp.ClientSession()
            try:
                async with self._session.post(
                    f"http://127.0.0.1:{self.port}/", data=call.body
                ) as answer:
                    return web.Response(status=answer.status, body=await answer.read())
            except aiohttp.ClientConnectionError as exc:
                return web.Response(status=502, text=f"cannot reach the function: {exc}")

        return proxy
