"""A lean function server for benchmarks; as a script:
`python function_server.py PORT DELAY [echo|digest]`.

Answers every request with 200 after DELAY seconds: with the request body (`echo`, the
default), or with the body's SHA-256 in hex (`digest`: the body is hashed as it arrives and
never held whole, for large bodies). It is a bare asyncio
protocol with `httptools` (the parser uvicorn uses), so it costs a few microseconds per request
and the benchmarks measure ferry, not the function: an aiohttp server cost about ten times as
much, and was the limit of the 100 ms scenario at concurrency 200 and of the Kafka benchmark,
where it ran in the harness's own process. A delayed answer is a timer (`call_later`), not a
task, for the same reason. `LeanServer` takes a handler, so a benchmark can serve a gateway's
`/system/functions` and count invocations from the same port.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import sys
from collections.abc import Callable

import httptools

# (method, path, body) -> (content type, answer body)
Handler = Callable[[bytes, bytes, bytes], tuple[bytes, bytes]]

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"


def echo(method: bytes, path: bytes, body: bytes) -> tuple[bytes, bytes]:
    return b"application/octet-stream", body


class FunctionProtocol(asyncio.Protocol):
    """One connection: keep-alive HTTP/1.1, answers in request order."""

    def __init__(self, handler: Handler, delay: float, digest: bool = False) -> None:
        self.handler = handler
        self.delay = delay
        self.digest = digest
        self.hashed = hashlib.sha256()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
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
        self.url = b""
        self.body = []
        self.hashed = hashlib.sha256()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        if self.digest:
            self.hashed.update(body)
        else:
            self.body.append(body)

    def on_message_complete(self) -> None:
        path = self.url.split(b"?", 1)[0]
        received = self.hashed.hexdigest().encode() if self.digest else b"".join(self.body)
        content_type, body = self.handler(self.parser.get_method(), path, received)
        answer = _HEAD % (content_type, len(body)) + body
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


class LeanServer:
    """The function server inside a benchmark's own event loop."""

    def __init__(self, handler: Handler = echo, delay: float = 0.0, digest: bool = False) -> None:
        self.handler = handler
        self.delay = delay
        self.digest = digest
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: FunctionProtocol(self.handler, self.delay, self.digest),
            "127.0.0.1",
            port,
            backlog=1024,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def serve(port: int, delay: float, digest: bool) -> None:
    server = LeanServer(echo, delay, digest)
    await server.start(port)
    assert server._server is not None
    async with server._server:
        await server._server.serve_forever()


def main() -> None:
    port, delay = int(sys.argv[1]), float(sys.argv[2])
    digest = len(sys.argv) > 3 and sys.argv[3] == "digest"
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(port, delay, digest))
        return
    uvloop.run(serve(port, delay, digest))


if __name__ == "__main__":
    main()
