"""The gateway's port: a lean HTTP/1.1 path for async and function calls, aiohttp for the rest.

aiohttp's full request machinery costs more CPU per request than storing the call on JetStream
does, and `POST /async-function/...` and `/function/...` are the requests a busy gateway serves
by the thousand. So every connection starts with `FastConnection`, which serves such calls
itself (`request_head` reads them; `FrontDoor` answers async calls, `LeanProxy` forwards
function calls) and, at the first request it does not serve itself, hands the connection with
all the bytes read so far to aiohttp's request handler for good. Requests on one connection are
answered in order, one at a time.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import http
import logging
import time
from collections.abc import Callable
from typing import cast

from connectors.core.http1 import Response
from gateway.config import DEFAULT_READ_TIMEOUT
from gateway.front_door import Answer, FrontDoor
from gateway.lean_proxy import LeanProxy, encode_answer
from gateway.request_head import HAND_OFF, NEED_MORE, Head, read_head

log = logging.getLogger("ferry.gateway")

KEEPALIVE_TIMEOUT = 75.0  # seconds an idle connection is kept, as aiohttp does
_READ_AHEAD = 256 * 1024  # bytes buffered beyond the request being served before pausing


class FastListener:
    """Accepts connections on the gateway's port and keeps track of the lean ones."""

    def __init__(
        self,
        front_door: FrontDoor,
        fallback: Callable[[], asyncio.Protocol],
        *,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        proxy: LeanProxy | None = None,
    ) -> None:
        self.front_door = front_door
        self.proxy = proxy  # None: function calls are left to aiohttp
        self.fallback = fallback
        self.keepalive_timeout = KEEPALIVE_TIMEOUT
        self.read_timeout = read_timeout
        self.loop = asyncio.get_running_loop()
        self.connections: set[FastConnection] = set()
        self.closing = False
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._date = _HttpDate()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful when `port` is 0). Raises OSError."""
        self._server = await self.loop.create_server(
            lambda: FastConnection(self), host, port, backlog=128
        )
        self._sweep()
        return int(self._server.sockets[0].getsockname()[1])

    def _sweep(self) -> None:
        """Close connections idle for longer than the keep-alive timeout, and answer 408 to
        requests that take longer than `read_timeout` to arrive; runs periodically.

        One timer for all connections: a timer per request cost several µs of each call."""
        timeout, read_timeout = self.keepalive_timeout, self.read_timeout
        now = self.loop.time()
        for connection in list(self.connections):
            since = connection.reading_since
            if since is not None and now - since >= read_timeout:
                connection.time_out()
                continue
            since = connection.idle_since
            if since is not None and now - since >= timeout:
                connection.close_if_idle()
        shortest = min(timeout, read_timeout)
        self._sweeper = self.loop.call_later(max(0.05, min(1.0, shortest / 2)), self._sweep)

    async def close(self, timeout: float) -> None:
        """Stop accepting; let calls being served finish (within `timeout`), close the rest."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.close_if_idle()
        busy = [c.serving for c in self.connections if c.serving is not None]
        if busy:
            await asyncio.wait(busy, timeout=timeout or None)
        for connection in list(self.connections):
            if connection.serving is not None:  # not done in time; the rest close by themselves
                connection.abort()

    def encode(self, answer: Answer | Response, keep_alive: bool) -> bytes:
        if isinstance(answer, Response):
            return encode_answer(answer, keep_alive, self._date.now())
        lines = [_status_line(answer.status)]
        lines.extend(f"{name}: {value}" for name, value in answer.headers)
        body = answer.text.encode()
        if body:
            lines.append("Content-Type: text/plain; charset=utf-8")
        lines.append(f"Content-Length: {len(body)}")
        lines.append(f"Date: {self._date.now()}")
        if not keep_alive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class FastConnection(asyncio.Protocol):
    def __init__(self, listener: FastListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: Head | None = None  # read, its body not complete yet
        self.serving: asyncio.Task[None] | None = None
        # since when the connection has waited for a request (None: one is being read or served)
        self.idle_since: float | None = None
        # since when the request being read began to arrive (None: none is being read)
        self.reading_since: float | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._eof = False

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport, though they behave as one
        self.transport = transport = cast(asyncio.Transport, transport)
        if self.listener.closing:
            transport.close()
            return
        self.listener.connections.add(self)
        self.idle_since = self.listener.loop.time()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.serving is None:
            if self.reading_since is None:
                self.reading_since = self.listener.loop.time()
            self._next()
        busy = self.serving is not None or self._writing_paused
        if busy and len(self.buffer) > _READ_AHEAD and self.transport is not None:
            # a client sending ahead of its answers waits until this one is written
            self.transport.pause_reading()
            self._reading_paused = True

    def eof_received(self) -> bool | None:
        # The client will send nothing more: the call being served is still answered.
        self._eof = True
        if self.serving is None:
            self._close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self.serving is None:
            self._resume_reading()
            self._next()

    # -- serving ----------------------------------------------------------------------------

    def _next(self) -> None:
        """Start on the next request in the buffer, if it is complete."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._writing_paused or not self.buffer:
            return
        if self.head is None:
            listener = self.listener
            read = read_head(
                self.buffer,
                listener.front_door.max_body_bytes,
                functions=listener.proxy is not None,
            )
            if read is NEED_MORE:
                return
            if read is HAND_OFF:
                self._hand_off()
                return
            assert isinstance(read, Head)
            self.head = read
            self.idle_since = None  # a body may take its time, as with aiohttp
        if len(self.buffer) < self.head.end:
            return
        head, self.head = self.head, None
        body = bytes(self.buffer[head.body_start : head.end])
        del self.buffer[: head.end]
        self.reading_since = None
        self.serving = self.listener.loop.create_task(self._serve(head, body))

    async def _serve(self, head: Head, body: bytes) -> None:
        keep_alive = head.keep_alive
        front_door, proxy = self.listener.front_door, self.listener.proxy
        answer: Answer | Response
        try:
            if head.proxied:
                assert proxy is not None  # read_head reads function calls only for a proxy
                answer = await proxy.forward(head, body)
            else:
                admitted = await front_door.admit(head)
                if isinstance(admitted, Answer):
                    answer = admitted
                else:
                    answer = await front_door.enqueue(admitted, head, body)
        except Exception:
            log.exception("call to %s failed unexpectedly", head.name)
            answer = Answer(500, "internal error\n")
            keep_alive = False
        # After the client's EOF, requests it sent before are still answered; the last answer
        # says the connection closes.
        last = self._eof and not self.buffer
        keep_alive = keep_alive and not last and not self.listener.closing
        transport = self.transport
        self.serving = None
        if transport is None or transport.is_closing():
            return
        transport.write(self.listener.encode(answer, keep_alive))
        if not keep_alive:
            self._close()
            return
        self._resume_reading()
        if self.buffer:
            self.reading_since = self.listener.loop.time()  # the next request began to arrive
            self._next()
        if self.serving is None:
            if self._eof:  # what is left can never be completed
                self._close()
            elif self.head is None:
                self.idle_since = self.listener.loop.time()

    def _hand_off(self) -> None:
        """From now on aiohttp serves this connection, starting with the bytes read so far."""
        transport = self.transport
        assert transport is not None
        self._resume_reading()
        self.listener.connections.discard(self)
        self.transport = None
        self.reading_since = None
        handler = self.listener.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        pending, self.buffer = bytes(self.buffer), bytearray()
        handler.data_received(pending)
        if self._eof and not handler.eof_received():
            transport.close()  # what asyncio does when a protocol does not keep a half-open line

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- closing ----------------------------------------------------------------------------

    def time_out(self) -> None:
        """The request being read took longer than `read_timeout` to arrive: 408, then close
        (a client sending a byte now and then must not hold a connection for ever)."""
        transport = self.transport
        self.reading_since = None
        if self.serving is None and transport is not None and not transport.is_closing():
            answer = Answer(408, "the request took longer than read_timeout to arrive\n")
            transport.write(self.listener.encode(answer, keep_alive=False))
            self._close()

    def close_if_idle(self) -> None:
        if self.serving is None:
            self._close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@functools.cache
def _status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"


class _HttpDate:
    """The Date header's value, worked out once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._text = email.utils.formatdate(second, usegmt=True)
        return self._text
