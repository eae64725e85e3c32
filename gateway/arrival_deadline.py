"""`read_timeout` on the aiohttp path: a request body must arrive within it, or 408.

The lean listener times the whole request itself. A connection it hands to aiohttp is bounded
in two steps: aiohttp closes a connection whose next head is not complete within its keep-alive
timeout (set to at most `read_timeout`), and this middleware gives a request's body
`read_timeout` from the moment its head was read. Past it the handler is cancelled and the
client gets 408 and a closed connection, or, if the answer had already begun (a proxied
function answering before the body was sent), just the closed connection.

Closing a connection whose client is still sending makes the kernel reset it, and a reset can
destroy an answer the client has not read yet. So the 408 is followed by a half-close (the
client reads the answer and its end) and the connection is closed `LINGER_SECONDS` later.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

LINGER_SECONDS = 1.0  # between the 408 and its half-close, and the close


def arrival_deadline(read_timeout: float) -> Middleware:
    @web.middleware
    async def within_read_timeout(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            return await handler(request)
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(None)

        def cut_off() -> None:
            if not request.content.is_eof():
                deadline.reschedule(loop.time())

        timer = loop.call_later(read_timeout, cut_off)
        try:
            async with deadline:
                return await handler(request)
        except TimeoutError:
            if not deadline.expired():
                raise
        finally:
            timer.cancel()
        # answered and closed here: aiohttp would otherwise wait for the rest of the body
        response = web.Response(
            status=408, text="the request took longer than read_timeout to arrive\n"
        )
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        transport = request.transport
        if transport is not None and transport.can_write_eof() and not transport.is_closing():
            transport.write_eof()
            await asyncio.sleep(LINGER_SECONDS)
        request.protocol.force_close()
        return response

    return within_read_timeout
