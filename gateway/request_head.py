"""Reads the head of an HTTP/1.1 request, for the two shapes the lean listener serves itself.

`read_head` accepts only a plain `POST /async-function/{name}[/{tail}][?query] HTTP/1.1` and,
when the listener proxies calls (`functions=True`), `{GET,POST,PUT,PATCH,DELETE}
/function/{name}[/{tail}][?query] HTTP/1.1`; each with a Content-Length (or no body), printable
ASCII throughout, and nothing whose meaning needs more than this module knows: no
Transfer-Encoding, Expect or Upgrade, no folded or repeated framing headers, no more than
`MAX_FIELDS` header lines, no percent-escapes or dot segments in the path. Anything else is
`HAND_OFF`: the listener gives the connection, with every byte read so far, to aiohttp, whose
parser handles all of HTTP. So this module may be strict (refusing what it is unsure of costs
only speed), and must never accept a request that aiohttp would read differently, or refuse.

A proxied call's query goes on to the upstream as it came, so it is accepted only when
aiohttp's client (yarl) would send it unchanged too: no character yarl escapes, and no
percent-escape that yarl decodes (`%41` goes out as `A`, `%2F` as `/`). Otherwise the two
ways in would reach the function with different queries.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from asyncq.timing import DELAY_HEADERS
from connectors.core.http1 import TOKEN_PATTERN
from gateway.call import AsyncCall

HEAD_LIMIT: Final = 8192  # bytes of request line and headers the lean path will look at
MAX_FIELDS: Final = 100  # header lines it will read (aiohttp refuses more than 128)

_BAD_CHARACTER = re.compile(r"[^\t\r\n -~]")  # anything but printable ASCII, tab, CR, LF
_FIELDS = re.compile(rf"(?:{TOKEN_PATTERN}:[^\r\n]*(?:\r\n|\Z))*")
_NAME_AND_TAIL = r"([A-Za-z0-9_.\-]+)(?:/([A-Za-z0-9\-._~!$&'()*+,;=:@/]*))?"
_ASYNC_TARGET = re.compile(rf"/async-function/{_NAME_AND_TAIL}(?:\?([!\x24-\x7e]*))?")
_FUNCTION_TARGET = re.compile(
    rf"/function/{_NAME_AND_TAIL}(?:\?((?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-F]{{2}})*))?"
)
# Bytes whose percent-escape yarl decodes in a query: unreserved characters and a few others.
_DECODED_BY_YARL = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$'()*,/:?@"
)
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
PROXIED_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_DOT_SEGMENTS = (".", "..")
# and the delay and expiry headers, picked out in the same pass (`asyncq.timing`)
_FRAMING = frozenset({"content-length", "host", "connection", "x-callback-url"} | DELAY_HEADERS)
_NOT_HERE = frozenset({"transfer-encoding", "expect", "upgrade"})  # left to aiohttp
# Headers aiohttp's parser refuses to see twice (Content-Length and Host are framing, above).
_SINGLETONS = frozenset(
    [
        "content-location",
        "content-range",
        "content-type",
        "etag",
        "max-forwards",
        "server",
        "user-agent",
    ]
)


@dataclass(slots=True, kw_only=True)
class Head(AsyncCall):
    """A request the lean path serves: the call, and where it lies in the buffer."""

    keep_alive: bool
    proxied: bool = False  # a `/function/` call to forward, not an async call to queue
    path: str = ""  # the request target's path, as received
    body_start: int  # offset of the body in the buffer
    body_length: int
    end: int  # offset just past the body


class Verdict(enum.Enum):
    NEED_MORE = "the head is not complete yet"
    HAND_OFF = "aiohttp should serve this connection"


NEED_MORE: Final = Verdict.NEED_MORE
HAND_OFF: Final = Verdict.HAND_OFF


def read_head(
    buffer: bytes | bytearray, max_body: int, *, functions: bool = False
) -> Head | Verdict:
    """The head at the start of `buffer`, `NEED_MORE` if it is incomplete, or `HAND_OFF`.
    `functions`: whether `/function/` calls are served (read) here too."""
    end = buffer.find(b"\r\n\r\n", 0, HEAD_LIMIT)
    if end < 0:
        if len(buffer) >= HEAD_LIMIT or buffer.count(b"\n") != buffer.count(b"\r\n"):
            return HAND_OFF  # too long, or a bare LF: this head would never end in CRLF CRLF
        return NEED_MORE
    try:
        head = buffer[:end].decode("ascii")
    except UnicodeDecodeError:
        return HAND_OFF
    crlf = head.count("\r\n")
    if _BAD_CHARACTER.search(head) or head.count("\r") != crlf or head.count("\n") != crlf:
        return HAND_OFF  # a control character, or a bare CR or LF
    request_line, _, fields = head.partition("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1":
        return HAND_OFF
    method, raw_target = parts[0], parts[1]
    proxied = functions and raw_target.startswith("/function/")
    if proxied:
        if method not in PROXIED_METHODS:
            return HAND_OFF
        target = _FUNCTION_TARGET.fullmatch(raw_target)
        if target is not None and target.group(3) and not _kept_by_yarl(target.group(3)):
            return HAND_OFF
    elif method == "POST":
        target = _ASYNC_TARGET.fullmatch(raw_target)
    else:
        return HAND_OFF
    if fields.count("\r\n") >= MAX_FIELDS:
        return HAND_OFF
    if target is None or (fields and _FIELDS.fullmatch(fields) is None):
        return HAND_OFF  # a field line with no colon, folded, or with space before its colon
    name, tail, query = target.group(1), target.group(2) or "", target.group(3) or ""
    if name in _DOT_SEGMENTS or tail.startswith("/") or "//" in tail:
        return HAND_OFF
    if tail and any(segment in _DOT_SEGMENTS for segment in tail.split("/")):
        return HAND_OFF

    headers: list[tuple[str, str]] = []
    length: int | None = None
    host: str | None = None
    callback: str | None = None
    keep_alive = True
    asked: dict[str, str] | None = None
    singletons: set[str] = set()
    for line in fields.split("\r\n") if fields else ():
        field, _, value = line.partition(":")
        value = value.strip(" \t")
        headers.append((field, value))
        lower = field.lower()
        if lower not in _FRAMING:
            if lower in _NOT_HERE:
                return HAND_OFF
            if lower in _SINGLETONS:
                if lower in singletons:
                    return HAND_OFF  # aiohttp answers 400 to a repeated one
                singletons.add(lower)
        elif lower == "content-length":
            if length is not None or not value.isdigit() or len(value) > 12:
                return HAND_OFF
            length = int(value)
        elif lower == "host":
            if host is not None:
                return HAND_OFF
            host = value
        elif lower == "connection":
            options = {option.strip(" \t").lower() for option in value.split(",")}
            if "upgrade" in options:
                return HAND_OFF
            keep_alive = keep_alive and "close" not in options
        elif lower == "x-callback-url":
            if callback is None:  # the first X-Callback-Url counts, as with aiohttp
                callback = value
        else:
            asked = asked or {}
            asked.setdefault(lower, value)
    if host is None or (length or 0) > max_body:
        return HAND_OFF
    return Head(
        method=method,
        proxied=proxied,
        path=raw_target.partition("?")[0],
        name=name,
        tail=tail,
        query_string=query,
        headers=headers,
        host=host,
        callback_url=(callback or "").strip(),
        asked=asked or {},
        keep_alive=keep_alive,
        body_start=end + 4,
        body_length=length or 0,
        end=end + 4 + (length or 0),
    )


def _kept_by_yarl(query: str) -> bool:
    """Whether no percent-escape in `query` is one that yarl would decode before sending."""
    if "%" not in query:
        return True
    return all(int(h, 16) not in _DECODED_BY_YARL for h in _ESCAPE.findall(query))
