"""Keep-alive connections and the pool that lends them out, one exchange at a time each."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable

from connectors.core.http1.answer import UNBOUNDED, AnswerParser, Response
from connectors.core.http1.deadlines import Deadlines
from connectors.core.http1.streamed import BodySourceError, StreamedBody
from connectors.core.http1.wire import HttpError, Origin, encode_head, split_url
from connectors.core.slots import CallSlots

# (host, port) -> addresses. An OSError from it is a failed connection (HttpError); any other
# exception (a policy's refusal, say) reaches the caller of `request` unchanged.
Resolver = Callable[[str, int], Awaitable[list[str]]]


# Methods whose request may be sent twice (RFC 9110, 9.2.2): only these are sent again on a
# new connection when a reused one closes with no answer, as aiohttp's client does. That close
# usually means the server had ended the idle connection before the request reached it, but
# nothing proves it did not read the request first; a POST that ran must not run twice here
# (the queue worker retries it through the broker, by its retry policy, if at all).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class _Stale(HttpError):
    """A reused connection closed before any byte of the answer arrived."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one exchange at a time."""

    def __init__(self, deadlines: Deadlines) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: AnswerParser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._deadlines = deadlines  # the client's: expires the answer at its deadline
        self._writable: asyncio.Future[None] | None = None  # set while the socket buffer is full
        self.body_cut = False  # a streamed body was not sent to its end

    @property
    def reusable(self) -> bool:
        return (
            not self.closed
            and not self.body_cut
            and self._parser is not None
            and self._parser.keep_alive
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(
        self, request: bytes, body: bytes, head_only: bool, deadline: float | None, max_body: int
    ) -> asyncio.Future[Response]:
        """Write the request; the future holds the answer (TimeoutError at `deadline`).

        A plain method returning a future, the deadline kept by the client's `Deadlines`: this
        runs twice per message, and a coroutine, asyncio.timeout() or even a timer handle of
        its own here costs more than the rest.
        """
        assert self.transport is not None
        self._parser = AnswerParser(head_only, max_body)
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self._waiter = waiter
        if len(body) <= 16384:
            self.transport.write(request + body)
        else:
            self.transport.writelines((request, body))
        if deadline is not None:
            self._deadlines.watch(self, deadline)
        return waiter

    async def stream(self, body: StreamedBody, answer: asyncio.Future[Response]) -> None:
        """Write `body` after its head, as fast as the peer takes it (at most the transport's
        high-water mark is buffered here). Stops early once the answer is settled: a server
        may answer (say, 413) before it has read the whole body."""
        sent = 0
        async for chunk in body.chunks:
            if answer.done() or self.closed:
                self.body_cut = True  # the server stopped reading: never send it more
                return
            sent += len(chunk)
            if sent > body.length:
                raise BodySourceError(f"the body is longer than its {body.length} bytes")
            assert self.transport is not None
            self.transport.write(chunk)
            if self._writable is not None:
                await asyncio.wait((self._writable, answer), return_when=asyncio.FIRST_COMPLETED)
        if sent != body.length and not answer.done():
            raise BodySourceError(f"the body ended after {sent} of its {body.length} bytes")

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _settle(self, response: Response | None, error: BaseException | None = None) -> None:
        self._deadlines.forget(self)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(response)  # type: ignore[arg-type]

    def expire(self) -> None:
        """The deadline passed before the answer was complete."""
        self._settle(None, TimeoutError())
        self.close()

    def data_received(self, data: bytes) -> None:
        parser, waiter = self._parser, self._waiter
        if parser is None or waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        try:
            response = parser.feed(data)
        except HttpError as exc:
            self.close()
            self._settle(None, exc)
            return
        if response is not None:
            self._settle(response)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.resume_writing()
        parser, waiter = self._parser, self._waiter
        if parser is None or waiter is None or waiter.done():
            self._settle(None)
            return
        response = parser.finish_at_close()
        if response is not None:
            self._settle(response)
            return
        reason = f": {exc}" if exc else ""
        if not parser.got_bytes:
            self._settle(None, _Stale(f"the server closed the connection{reason}"))
        else:
            self._settle(None, HttpError(f"the connection closed mid-answer{reason}"))

    def close(self) -> None:
        self.closed = True
        self._deadlines.forget(self)
        if self.transport is not None:
            if self.body_cut or self._writable is not None:
                self.transport.abort()  # unsent body bytes would wait on a peer not reading
            else:
                self.transport.close()


class Http1Client:
    """Pooled keep-alive HTTP/1.1 calls; at most `limit` requests (and connections) at once."""

    def __init__(
        self,
        *,
        limit: int,
        idle_timeout: float = 30.0,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_response_bytes: int = UNBOUNDED,
    ) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.max_response_bytes = max_response_bytes
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._slots = CallSlots(limit)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._deadlines = Deadlines()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | StreamedBody = b"",
        timeout: float | None = None,
        header_lines: str = "",
    ) -> Response:
        """One exchange; `header_lines` are more headers as `wire.header_lines` wrote them
        (sent after `headers`). Raises HttpError (ResponseTooLarge past
        `max_response_bytes`, BodySourceError when a streamed body fails), InvalidRequest or
        TimeoutError.

        TimeoutError means the request may have reached the server (it was being sent or
        answered); a deadline that passes before anything was sent is an HttpError, so a caller
        can tell "may have run" from "certainly did not run".
        """
        origin, target = split_url(url)
        if isinstance(body, StreamedBody):
            streamed, payload, length = body, b"", body.length
        else:
            streamed, payload, length = None, body, len(body)
        head = encode_head(method, target, origin, headers, length, header_lines)
        head_only = method == "HEAD"
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        slots = self._slots
        if not slots.take():  # every connection in use: wait for one, within the deadline
            try:
                async with asyncio.timeout_at(deadline):
                    await slots.wait()
            except TimeoutError:
                raise HttpError("no free connection before the deadline; nothing sent") from None
        try:
            connection = self._take_idle(origin)
            while True:
                reused = connection is not None
                if connection is None:
                    try:
                        async with asyncio.timeout_at(deadline):
                            connection = await self._connect(origin)
                    except TimeoutError:
                        raise HttpError("no connection before the deadline; nothing sent") from None
                try:
                    answer = connection.send(
                        head, payload, head_only, deadline, self.max_response_bytes
                    )
                    if streamed is not None:
                        await _stream_until_answered(connection, streamed, answer)
                    response = await answer
                except _Stale:
                    connection.close()
                    if not reused:
                        raise
                    if method not in IDEMPOTENT_METHODS:
                        raise HttpError(
                            f"the server closed a kept-alive connection without answering; a "
                            f"{method} is not sent again (the server may have read it)"
                        ) from None
                    connection = None  # likely closed while idle: once more, anew
                    continue
                except BaseException:
                    connection.close()
                    raise
                self._release(origin, connection)
                return response
        finally:
            slots.release()

    def _take_idle(self, origin: Origin) -> _Connection | None:
        pool = self._idle.get(origin)
        now = time.monotonic()
        while pool:
            connection = pool.pop()
            self._idle_count -= 1
            if not connection.closed and now - connection.idle_since < self.idle_timeout:
                return connection
            connection.close()
        return None

    def _release(self, origin: Origin, connection: _Connection) -> None:
        if not connection.reusable or self._idle_count >= self.limit:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(connection)
        self._idle_count += 1

    async def _connect(self, origin: Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            if self._ssl_context is None:  # made once: loading the CA store takes milliseconds
                self._ssl_context = ssl.create_default_context()
            tls = self._ssl_context
        try:
            if self._resolver is None:
                hosts = [origin.host]
            else:
                hosts = await self._resolver(origin.host, origin.port)
            error: OSError = OSError(f"{origin.host} has no address")
            for host in hosts:
                try:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(self._deadlines),
                        host,
                        origin.port,
                        ssl=tls,
                        server_hostname=origin.host if tls else None,
                    )
                    return connection
                except OSError as exc:
                    error = exc
            raise error
        except OSError as exc:
            detail = exc.strerror or str(exc) or exc.__class__.__name__
            raise HttpError(f"cannot connect to {origin.authority}: {detail}") from None

    async def close(self) -> None:
        for pool in self._idle.values():
            for connection in pool:
                connection.close()
        self._idle.clear()
        self._idle_count = 0


async def _stream_until_answered(
    connection: _Connection, body: StreamedBody, answer: asyncio.Future[Response]
) -> None:
    """Send a streamed body; a failing source closes the connection (the peer must never take
    a short body for a whole one) and its error is raised unless the answer came first."""
    try:
        await connection.stream(body, answer)
    except BaseException:
        connection.close()
        if answer.done() and not answer.cancelled():
            answer.exception()  # seen: the source's error is the one that matters
        raise
