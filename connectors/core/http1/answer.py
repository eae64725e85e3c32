"""Reading an answer: the status line, the headers and a body framed by Content-Length, chunked
coding or the end of the connection (RFC 9112, 6.3), fed in whatever pieces the socket gives.

A body longer than the parser's `max_body` is refused as soon as that is known (a declared
length at once, a chunk when its size line arrives, an unframed body once it passes the
bound), so no more than `max_body` bytes of body are ever held.

A head of up to `KEPT_HEAD_BYTES` is read once and kept (`HEADS_KEPT` at most): a function
answers with much the same head every time, and reading it was half of an answer's cost. Its
headers are then one read-only object shared by the answers that carry it."""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass
from typing import NamedTuple

from multidict import CIMultiDict, CIMultiDictProxy

from connectors.core.frozen import fields_at_once
from connectors.core.http1.wire import VALID_NAMES, HttpError, is_token

MAX_HEAD = 64 * 1024  # status line and headers of one answer
MAX_CHUNK_LINE = 4 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")  # a chunk size
NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
UNBOUNDED = 1 << 62
TOO_LONG = -1  # a declared length of more than 19 digits: past every bound


class ResponseTooLarge(HttpError):
    """The answer's body is longer than the caller allows: it was not read further.

    Retrying cannot help (the same function gives the same answer), so callers treat it as
    final. `status` is the answer's status, read before its body."""

    def __init__(self, limit: int, status: int) -> None:
        super().__init__(f"response larger than max_response_bytes ({limit} bytes)")
        self.limit = limit
        self.status = status


@fields_at_once
@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    body: bytes


def _is_decimal(text: str, size: int | None = None) -> bool:
    """ASCII digits only (str.isdigit alone also admits "²" and other Unicode digits)."""
    return text.isascii() and text.isdigit() and (size is None or len(text) == size)


class AnswerParser:
    """Frames one answer from the bytes of a connection, incrementally."""

    def __init__(self, head_only: bool, max_body: int = UNBOUNDED) -> None:
        self.head_only = head_only
        self.max_body = max_body
        self.body_size = 0  # bytes of a chunked body taken so far
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
                if len(self.buffer) == self.remaining:  # the usual case: one copy, not two
                    self.chunks.append(bytes(self.buffer))
                    self.buffer.clear()
                else:
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
                end = self._find(b"\r\n\r\n", MAX_HEAD, "chunked trailers over 64 KiB")
                if end < 0:
                    return None
                del self.buffer[: end + 4]
                return self._done()
            else:  # "until-close": the body is whatever arrives before the connection ends
                if len(self.buffer) > self.max_body:
                    raise ResponseTooLarge(self.max_body, self.status)
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

    def _find(self, marker: bytes, limit: int, too_long: str) -> int:
        """Where `marker` starts in the buffer, -1 while it may still come (HttpError once the
        buffer holds more than `limit` bytes without it)."""
        end = self.buffer.find(marker)
        if end < 0 and len(self.buffer) > limit:
            raise HttpError(too_long)
        return end

    def _read_head(self) -> bool:
        end = self._find(b"\r\n\r\n", MAX_HEAD, "answer head over 64 KiB")
        if end < 0:
            return False
        raw = bytes(self.buffer[:end])
        del self.buffer[: end + 4]
        head = _head_kept(raw) if end <= KEPT_HEAD_BYTES else _head(raw)
        if head is None:
            return True  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status, self.reason, self.headers, self.keep_alive = head[:4]
        self._frame(head)
        return True

    def _frame(self, head: _Head) -> None:
        """How the body is delimited (RFC 9112, 6.3), as the head says (`_framing`)."""
        if self.head_only or self.status in NO_BODY_STATUSES:
            self.state, self.remaining = "length", 0
            return
        framing = head.framing
        if framing is _Framing.LENGTH:
            if head.length > self.max_body or head.length == TOO_LONG:
                raise ResponseTooLarge(self.max_body, self.status)
            self.state, self.remaining = "length", head.length
        elif framing is _Framing.CHUNKED:
            self.state = "chunk-size"
            if head.both:  # a Content-Length beside it: the connection is not trusted again
                self.keep_alive = False
        elif framing is _Framing.UNTIL_CLOSE:
            self.state, self.keep_alive = "until-close", False
        else:
            raise HttpError(head.problem)

    def _read_chunk_size(self) -> bool:
        end = self._find(
            b"\r\n", MAX_CHUNK_LINE, "malformed chunked body: chunk size line too long"
        )
        if end < 0:
            return False
        size_text = bytes(self.buffer[:end]).split(b";", 1)[0].strip(b" \t")
        del self.buffer[: end + 2]
        if not _HEX.fullmatch(size_text):  # int(..., 16) alone would take "+1", "0x1", "1_0"
            raise HttpError(f"malformed chunked body: chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            self.state = "trailers"
            return True
        self.body_size += size
        if self.body_size > self.max_body:  # refused before the chunk is buffered
            raise ResponseTooLarge(self.max_body, self.status)
        self.state, self.remaining = "chunk-data", size
        return True


class _Framing(enum.Enum):
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding ending in chunked
    UNTIL_CLOSE = "until-close"  # neither, or another coding: the body ends with the connection
    INVALID = "invalid"  # a Content-Length that cannot be read


class _Head(NamedTuple):
    """What a final answer's status line and headers say."""

    status: int
    reason: str
    headers: CIMultiDictProxy[str]  # read-only: one object may serve many answers
    keep_alive: bool
    framing: _Framing  # how a body (if the answer has one) is delimited
    length: int  # LENGTH: the declared length (TOO_LONG past 19 digits)
    problem: str  # INVALID: why
    both: bool  # CHUNKED: a Content-Length came too


def _head(raw: bytes) -> _Head | None:
    """The status line and headers of an answer (without the blank line), or None for an
    interim answer (1xx); HttpError if they are malformed."""
    # Latin-1 maps every byte to one character: one decode, and the bytes survive as they are.
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not _is_decimal(code, 3):
        raise HttpError(f"malformed status line {lines[0][:100]!r}")
    status = int(code)
    pairs: list[tuple[str, str]] = []
    known = VALID_NAMES  # the names seen before: no call to check them again
    for index in range(1, len(lines)):
        line = lines[index]
        name, colon, value = line.partition(":")
        if not colon or (name not in known and not is_token(name)):
            raise HttpError(f"malformed header line {line[:100]!r}")
        pairs.append((name, value.strip(" \t")))
    if 100 <= status < 200:
        return None
    headers = CIMultiDictProxy(CIMultiDict(pairs))
    keep_alive = version == "HTTP/1.1" and "close" not in headers.get("Connection", "").lower()
    return _Head(status, rest[4:], headers, keep_alive, *_framing(headers))


def _framing(headers: CIMultiDictProxy[str]) -> tuple[_Framing, int, str, bool]:
    """How a body is delimited by these headers (RFC 9112, 6.3): Transfer-Encoding wins over
    Content-Length; a length of more than 19 digits is past any bound (`TOO_LONG`). Worked
    out once per head kept, whether or not the answer has a body (a HEAD's, a 204's)."""
    codings = headers.getall("Transfer-Encoding", ()) if "Transfer-Encoding" in headers else ()
    lengths = headers.getall("Content-Length", ())
    if codings:
        last = ",".join(codings).rsplit(",", 1)[-1].strip().lower()
        if last == "chunked":
            return _Framing.CHUNKED, 0, "", bool(lengths)
        return _Framing.UNTIL_CLOSE, 0, "", False
    if not lengths:
        return _Framing.UNTIL_CLOSE, 0, "", False
    if len(lengths) == 1 and "," not in lengths[0]:  # the usual answer: one value
        value = lengths[0].strip()
    else:
        values = {value.strip() for line in lengths for value in line.split(",")}
        if len(values) != 1:
            return _Framing.INVALID, 0, f"invalid Content-Length {lengths!r}", False
        value = values.pop()
    if not _is_decimal(value):
        return _Framing.INVALID, 0, f"invalid Content-Length {lengths!r}", False
    if len(value.lstrip("0")) > 19:  # past UNBOUNDED: too large, and no huge int made
        return _Framing.LENGTH, TOO_LONG, "", False
    return _Framing.LENGTH, int(value), "", False


# A server answers with much the same head each time (its Date changes once a second): a head
# of up to KEPT_HEAD_BYTES is read once and kept a while, HEADS_KEPT of them at most; a longer
# one is read every time and never kept. A malformed head is never kept (it raises).
KEPT_HEAD_BYTES = 1024
HEADS_KEPT = 256
_head_kept = functools.lru_cache(maxsize=HEADS_KEPT)(_head)
