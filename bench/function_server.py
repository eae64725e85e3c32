"""A function for benchmarks: `python function_server.py PORT DELAY_SECONDS`.

Serves `/function/{name}` (and `/{anything}`) on 127.0.0.1, answering 200 with the request body
after DELAY_SECONDS.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if delay:
            await asyncio.sleep(delay)
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
