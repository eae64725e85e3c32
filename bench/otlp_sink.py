"""An OTLP/HTTP endpoint for benchmarks: accepts `POST /v1/traces` and counts what arrives.

Run as its own process (`python bench/otlp_sink.py PORT`), so that decoding what ferry exports
costs the benchmark's processes nothing; on SIGTERM it prints the requests and bytes it got.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web


async def serve(port: int) -> None:
    got = {"requests": 0, "bytes": 0}

    async def export(request: web.Request) -> web.Response:
        got["requests"] += 1
        got["bytes"] += len(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", export)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    print(f"otlp sink: {got['requests']} requests, {got['bytes']} bytes", flush=True)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
