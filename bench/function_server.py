"""A function for benchmarks: `python function_server.py PORT DELAY_SECONDS`.

Answers every request on 127.0.0.1:PORT with 200 and the request body, after DELAY_SECONDS.
It is a bare asyncio protocol with `httptools` (the parser uvicorn uses) on uvloop, so it costs
a few microseconds per request and the benchmarks measure ferry, not the function: an aiohttp
server cost about ten times as much and was the limit of the 100 ms scenario at concurrency 200.
A delayed answer is a timer (`call_later`), not a task, for the same reason.
"""

from __future__ import annotations

import asyncio
import collections
import sys

import httptools

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"


class FunctionProtocol(asyncio.Protocol):
    """One connection: keep-alive HTTP/1.1, answers in request order."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.pending: collections.deque[list[bytes | None]] = collections.deque()
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body = b"".join(self.body)
        answer = _HEAD % len(body) + body
        if not self.delay:
            self._write(answer)
            return
        slot: list[bytes | None] = [None]
        self.pending.append(slot)
        self.loop.call_later(self.delay, self._due, slot, answer)

    def _due(self, slot: list[bytes | None], answer: bytes) -> None:
        """Answers leave in request order, whatever order equal timers fire in."""
        slot[0] = answer
        while self.pending and self.pending[0][0] is not None:
            ready = self.pending.popleft()[0]
            assert ready is not None
            self._write(ready)

    def _write(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)


async def serve(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FunctionProtocol(delay), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    try:
        import uvloop

        uvloop.run(serve(port, delay))
    except ImportError:
        asyncio.run(serve(port, delay))


if __name__ == "__main__":
    main()
