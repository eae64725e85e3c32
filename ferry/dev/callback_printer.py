"""The built-in callback receiver of `ferry dev`: prints every result it is sent."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

BODY_SHOWN = 200


class CallbackPrinter:
    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        text = body[:BODY_SHOWN].decode("utf-8", "replace").strip()
        more = "..." if len(body) > BODY_SHOWN else ""
        self.emit(
            f"callback  {headers.get('X-Function-Name', '?')}  "
            f"call {headers.get('X-Call-Id', '?')}  "
            f"status {headers.get('X-Function-Status', '?')}  "
            f"retry {headers.get('X-Retry', '?')}/{headers.get('X-Retry-Max', '?')}  "
            f"{headers.get('X-Duration-Seconds', '?')}s  body: {text}{more}"
        )
        return web.Response(status=202)
