"""A lean HTTP/1.1 client for the two calls made per message: the invocation and the callback.

Every message costs one invocation and usually one callback, so this client sets how many
messages one process can carry. aiohttp's `ClientSession` spends about 100 µs of CPU per
request on the 2-core development box (a `ClientRequest`, trace hooks, timers, a stream
reader); this client writes the request in one piece and frames the answer itself, in about a
third of that (`bench/README.md`). aiohttp remains the library for everything else: the
servers, the topic map, the gateway's proxy.

What it does: keep-alive connections pooled per origin under one limit; answers framed by
Content-Length, chunked, or the end of the connection; 1xx interim answers skipped; one timeout
around the whole call; TLS; a pluggable resolver (the SSRF guard checks addresses there). A
request on a reused connection that the server had already closed, before any byte of an
answer came back, is sent once more on a new connection.

What it refuses, with an error rather than a guess: header names or values that would break
the framing (CR, LF, NUL, a colon or space in a name), a malformed status line, a head over
64 KiB, conflicting Content-Length values, a broken chunk.
Left out on purpose: redirects, proxies, cookies, compression, streaming bodies.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from multidict import CIMultiDict, CIMultiDictProxy

MAX_HEAD = 64 * 1024  # status line and headers of one answer
MAX_CHUNK_LINE = 4 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
# A header name is an RFC 9110 token; a value may hold anything but CR, LF and NUL.
_TOKEN_CHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN = re.compile(_TOKEN_CHARS.encode())
_TOKEN_TEXT = re.compile(_TOKEN_CHARS)
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")  # a chunk size
_VALID_NAMES: set[str | bytes] = set()
_VALID_NAMES_MAX = 4096


def valid_header_name(name: str | bytes) -> bool:
    """True for an RFC 9110 token (remembered: the same few names come on every call)."""
    if name in _VALID_NAMES:
        return True
    pattern = _TOKEN_TEXT if isinstance(name, str) else _TOKEN
    if pattern.fullmatch(name) is None:  # type: ignore[arg-type]
        return False
    if len(_VALID_NAMES) < _VALID_NAMES_MAX:
        _VALID_NAMES.add(name)
    return True


NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())

Resolver = Callable[[str, int], Awaitable[list[str]]]


class HttpError(Exception):
    """The exchange failed: no connection, the connection broke, or the answer was malformed."""


class InvalidRequest(ValueError):
    """The request cannot be written as asked (a bad URL or a header that breaks framing)."""


class _Stale(HttpError):
    """A reused connection closed before any byte of the answer arrived."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def authority(self) -> str:
        """The Host header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes


@functools.lru_cache(maxsize=1024)
def split_url(url: str) -> tuple[Origin, str]:
    """(origin, request target) of an absolute http(s) URL; InvalidRequest if it is not one.

    What may not appear raw in a request line (spaces, controls, non-ASCII) is percent-encoded
    as UTF-8, and existing %XX escapes are kept, as aiohttp's URL handling does; a non-ASCII
    host name is sent in its IDNA form.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequest(f"malformed URL {url!r}: {exc}") from None
    host = parts.hostname
    if parts.scheme not in {"http", "https"} or not host:
        raise InvalidRequest(f"{url!r} is not an absolute http(s) URL")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidRequest(f"host {host!r} is not a valid name: {exc}") from None
    origin = Origin(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))
    target = quote(parts.path, safe=_PATH_SAFE) or "/"
    if parts.query:
        target = f"{target}?{quote(parts.query, safe=_QUERY_SAFE)}"
    return origin, target


# Characters a path or query may hold as they are (RFC 3986), "%" kept for existing escapes.
_PATH_SAFE = "/:@!$&'()*+,;=%~"
_QUERY_SAFE = _PATH_SAFE + "?"


def encode_head(
    method: str, target: str, origin: Origin, headers: Iterable[tuple[str, str]], length: int
) -> bytes:
    """Request line and headers, with Host and Content-Length set here and nowhere else."""
    if not valid_header_name(method):  # a method is a token too
        raise InvalidRequest(f"method {method[:40]!r} is not a valid token")
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin.authority}\r\n"]
    for name, value in headers:
        if not valid_header_name(name):
            raise InvalidRequest(f"header name {name!r} is not a valid token")
        if "\r" in value or "\n" in value or "\x00" in value:
            raise InvalidRequest(f"header {name} holds a CR, LF or NUL character")
        lines.append(f"{name}: {value}\r\n")
    if length or method not in {"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"}:
        lines.append(f"Content-Length: {length}\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def _is_decimal(text: str, size: int | None = None) -> bool:
    """ASCII digits only (str.isdigit alone also admits "²" and other Unicode digits)."""
    return text.isascii() and text.isdigit() and (size is None or len(text) == size)


class _Parser:
    """Frames one answer from the bytes of a connection, incrementally."""

    def __init__(self, head_only: bool) -> None:
        self.head_only = head_only
        self.buffer = bytearray()
        self.got_bytes = False
        self.state = "head"
        self.status = 0
        self.reason = ""
        self.headers = NO_HEADERS
        self.keep_alive = False
        self.remaining = 0
        self.chunks: list[bytes] = []

    def feed(self, data: bytes) -> Response | None:
        """The answer once it is complete, else None. Raises HttpError for a malformed one."""
        self.got_bytes = True
        self.buffer += data
        while True:
            if self.state == "head":
                if not self._read_head():
                    return None
            elif self.state == "length":
                if len(self.buffer) < self.remaining:
                    return None
                self.chunks.append(bytes(self.buffer[: self.remaining]))
                del self.buffer[: self.remaining]
                return self._done()
            elif self.state == "chunk-size":
                if not self._read_chunk_size():
                    return None
            elif self.state == "chunk-data":
                if len(self.buffer) < self.remaining + 2:
                    return None
                if self.buffer[self.remaining : self.remaining + 2] != b"\r\n":
                    raise HttpError("malformed chunked body: a chunk does not end in CRLF")
                self.chunks.append(bytes(self.buffer[: self.remaining]))
                del self.buffer[: self.remaining + 2]
                self.state = "chunk-size"
            elif self.state == "trailers":
                if self.buffer[:2] == b"\r\n":
                    del self.buffer[:2]
                    return self._done()
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buffer) > MAX_HEAD:
                        raise HttpError("chunked trailers over 64 KiB")
                    return None
                del self.buffer[: end + 4]
                return self._done()
            else:  # "until-close": the body is whatever arrives before the connection ends
                return None

    def finish_at_close(self) -> Response | None:
        """The answer when the connection closed, if the answer was framed by the close."""
        if self.state != "until-close":
            return None
        self.chunks.append(bytes(self.buffer))
        self.buffer.clear()
        return self._done()

    def _done(self) -> Response:
        if self.buffer:  # bytes beyond the answer: the connection is out of step
            self.keep_alive = False
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.state = "done"
        return Response(self.status, self.reason, self.headers, body)

    def _read_head(self) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise HttpError("answer head over 64 KiB")
            return False
        # Latin-1 maps every byte to one character: one decode, and the bytes survive as they are.
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if version not in ("HTTP/1.1", "HTTP/1.0") or not _is_decimal(code, 3):
            raise HttpError(f"malformed status line {lines[0][:100]!r}")
        status = int(code)
        pairs: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not valid_header_name(name):
                raise HttpError(f"malformed header line {line[:100]!r}")
            pairs.append((name, value.strip(" \t")))
        if 100 <= status < 200:
            return True  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self.reason = rest[4:]
        self.headers = CIMultiDictProxy(CIMultiDict(pairs))
        connection = self.headers.get("Connection", "").lower()
        self.keep_alive = version == "HTTP/1.1" and "close" not in connection
        self._frame()
        return True

    def _frame(self) -> None:
        """How the body is delimited (RFC 9112, 6.3)."""
        if self.head_only or self.status in NO_BODY_STATUSES:
            self.state, self.remaining = "length", 0
            return
        codings = self.headers.getall("Transfer-Encoding", [])
        lengths = self.headers.getall("Content-Length", [])
        if codings:
            last = ",".join(codings).rsplit(",", 1)[-1].strip().lower()
            if lengths:  # both: Transfer-Encoding wins, and the connection is not trusted again
                self.keep_alive = False
            if last == "chunked":
                self.state = "chunk-size"
            else:
                self.state, self.keep_alive = "until-close", False
            return
        if lengths:
            values = {value.strip() for line in lengths for value in line.split(",")}
            if len(values) != 1 or not _is_decimal(value := values.pop()):
                raise HttpError(f"invalid Content-Length {lengths!r}")
            self.state, self.remaining = "length", int(value)
            return
        self.state, self.keep_alive = "until-close", False

    def _read_chunk_size(self) -> bool:
        end = self.buffer.find(b"\r\n")
        if end < 0:
            if len(self.buffer) > MAX_CHUNK_LINE:
                raise HttpError("malformed chunked body: chunk size line too long")
            return False
        size_text = bytes(self.buffer[:end]).split(b";", 1)[0].strip(b" \t")
        del self.buffer[: end + 2]
        if not _HEX.fullmatch(size_text):  # int(..., 16) alone would take "+1", "0x1", "1_0"
            raise HttpError(f"malformed chunked body: chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            self.state = "trailers"
        else:
            self.state, self.remaining = "chunk-data", size
        return True


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one exchange at a time."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser: _Parser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def reusable(self) -> bool:
        return not self.closed and self._parser is not None and self._parser.keep_alive

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(
        self, request: bytes, body: bytes, head_only: bool, deadline: float | None
    ) -> asyncio.Future[Response]:
        """Write the request; the future holds the answer (TimeoutError at `deadline`).

        A plain method returning a future, with a timer handle for the deadline: this runs
        twice per message, and a coroutine or asyncio.timeout() here costs more than the rest.
        """
        assert self.transport is not None
        self._parser = _Parser(head_only)
        waiter: asyncio.Future[Response] = self.loop.create_future()
        self._waiter = waiter
        if len(body) <= 16384:
            self.transport.write(request + body)
        else:
            self.transport.writelines((request, body))
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._expire)
        return waiter

    def _settle(self, response: Response | None, error: BaseException | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(response)  # type: ignore[arg-type]

    def _expire(self) -> None:
        self._timer = None
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.transport is not None:
            self.transport.close()


class _Limit:
    """A counting limit with a deadline; cheaper than asyncio.Semaphore when nobody waits."""

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: deque[asyncio.Future[None]] = deque()

    def try_acquire(self) -> bool:
        if self.free > 0 and not self.waiters:
            self.free -= 1
            return True
        return False

    async def acquire(self, deadline: float | None) -> None:
        """Wait for a slot (TimeoutError at `deadline`); call after try_acquire failed."""
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as the wait ended: pass it on
            raise

    def release(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next waiter
                return
        self.free += 1


class Http1Client:
    """Pooled keep-alive HTTP/1.1 calls; at most `limit` requests (and connections) at once."""

    def __init__(
        self,
        *,
        limit: int,
        idle_timeout: float = 30.0,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.limit = limit
        self.idle_timeout = idle_timeout
        self._resolver = resolver
        self._ssl_context = ssl_context
        self._slots = _Limit(limit)
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Response:
        """One exchange. Raises HttpError, InvalidRequest or TimeoutError (after `timeout`)."""
        origin, target = split_url(url)
        head = encode_head(method, target, origin, headers, len(body))
        head_only = method == "HEAD"
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        slots = self._slots
        if not slots.try_acquire():
            await slots.acquire(deadline)
        try:
            connection = self._take_idle(origin)
            while True:
                reused = connection is not None
                if connection is None:
                    async with asyncio.timeout_at(deadline):
                        connection = await self._connect(origin)
                try:
                    response = await connection.send(head, body, head_only, deadline)
                except _Stale:
                    connection.close()
                    if not reused:
                        raise
                    connection = None  # the server had closed it unread: once more, anew
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
        hosts = [origin.host] if self._resolver is None else None
        try:
            if hosts is None:
                assert self._resolver is not None
                hosts = await self._resolver(origin.host, origin.port)
            error: OSError | None = None
            for host in hosts:
                try:
                    _, connection = await loop.create_connection(
                        _Connection,
                        host,
                        origin.port,
                        ssl=tls,
                        server_hostname=origin.host if tls else None,
                    )
                    return connection
                except OSError as exc:
                    error = exc
            raise error or OSError(f"{origin.host} has no address")
        except OSError as exc:
            detail = exc.strerror or str(exc) or exc.__class__.__name__
            raise HttpError(f"cannot connect to {origin.authority}: {detail}") from None

    async def close(self) -> None:
        for pool in self._idle.values():
            for connection in pool:
                connection.close()
        self._idle.clear()
        self._idle_count = 0
