"""A function for benchmarks: `python function_server.py PORT DELAY_SECONDS [echo|digest]`.

Serves `/function/{name}` (and `/{anything}`) on 127.0.0.1, answering 200 after DELAY_SECONDS
with the request body (`echo`, the default) or with the body's SHA-256 in hex (`digest`: the
body is read as it arrives and never held whole, for large bodies).
"""

from __future__ import annotations

import asyncio
import hashlib
import sys

from aiohttp import web


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    digest = len(sys.argv) > 3 and sys.argv[3] == "digest"

    async def handle(request: web.Request) -> web.Response:
        if digest:
            hashed = hashlib.sha256()
            async for piece in request.content.iter_chunked(256 * 1024):
                hashed.update(piece)
            body = hashed.hexdigest().encode()
        else:
            body = await request.read()
        if delay:
            await asyncio.sleep(delay)
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
