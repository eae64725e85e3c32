"""Refuses request paths with dot segments before any route sees them (aiohttp middleware).

An upstream that resolves `..` would let `POST /function/echo/%2e%2e/%2e%2e/system/functions`
reach its management API, and a queued call would carry such a path to the gateway later. So
every route answers 400 to a `.` or `..` segment, raw or percent-encoded, and to an encoded
`/` or `\\` inside a segment (`connectors.core.targets.path_problem`). The lean listener hands
such requests to aiohttp (it serves no percent-escapes or dot segments), so this one check
covers both ways in.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from connectors.core.targets import path_problem


@web.middleware
async def refuse_dot_segments(request: web.Request, handler: Handler) -> web.StreamResponse:
    problem = path_problem(request.raw_path.partition("?")[0])
    if problem is not None:
        return web.Response(status=400, text=f"bad request: {problem}\n")
    return await handler(request)
