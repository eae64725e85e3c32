"""The lean listener's request-head reader: what it serves itself, and what it leaves to aiohttp.

Whatever it accepts, aiohttp's own parser must read the same way; the property test at the end
checks that on generated requests, most of them near the edge of what is accepted.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParser
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from connectors.core.http1 import split_url
from gateway.request_head import (
    HAND_OFF,
    HEAD_LIMIT,
    MAX_FIELDS,
    NEED_MORE,
    Head,
    read_head,
)

MAX_BODY = 1000


def request(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def test_a_plain_async_call_is_read_with_its_headers_in_order() -> None:
    data = request(
        "POST /async-function/echo.team/sub/path?x=1&y=%20 HTTP/1.1",
        "Host: gw:8080",
        "X-Callback-Url:  http://cb/done ",
        "X-Custom: a",
        "x-custom: b",
        "Content-Length: 5",
        body=b"hello" + b"POST next",
    )
    head = read_head(data, MAX_BODY)
    assert isinstance(head, Head)
    assert (head.name, head.tail, head.query_string) == ("echo.team", "sub/path", "x=1&y=%20")
    assert head.host == "gw:8080"
    assert head.callback_url == "http://cb/done"
    assert head.headers == [
        ("Host", "gw:8080"),
        ("X-Callback-Url", "http://cb/done"),
        ("X-Custom", "a"),
        ("x-custom", "b"),
        ("Content-Length", "5"),
    ]
    assert head.keep_alive
    assert data[head.body_start : head.end] == b"hello"


@pytest.mark.parametrize(
    ("target", "tail"),
    [
        ("/async-function/echo", ""),
        ("/async-function/echo/", ""),
        ("/async-function/echo/a/", "a/"),
        ("/async-function/echo?q", ""),
    ],
)
def test_the_tail_is_what_follows_the_name(target: str, tail: str) -> None:
    head = read_head(request(f"POST {target} HTTP/1.1", "Host: h"), MAX_BODY)
    assert isinstance(head, Head)
    assert (head.name, head.tail, head.body_length) == ("echo", tail, 0)


@pytest.mark.parametrize("connection", ["close", "Close", "keep-alive, close", "te,  CLOSE "])
def test_connection_close_is_honoured(connection: str) -> None:
    head = read_head(
        request("POST /async-function/f HTTP/1.1", "Host: h", f"Connection: {connection}"),
        MAX_BODY,
    )
    assert isinstance(head, Head)
    assert not head.keep_alive


def test_an_incomplete_head_needs_more_and_an_endless_one_is_handed_off() -> None:
    data = request("POST /async-function/f HTTP/1.1", "Host: h")
    for cut in range(len(data) - 1):
        assert read_head(data[:cut], MAX_BODY) is NEED_MORE
    endless = b"POST /async-function/f HTTP/1.1\r\nX-Long: " + b"a" * HEAD_LIMIT
    assert read_head(endless, MAX_BODY) is HAND_OFF


HANDED_OFF = {
    "another method": request("GET /async-function/f HTTP/1.1", "Host: h"),
    "HTTP/1.0": request("POST /async-function/f HTTP/1.0", "Host: h"),
    "another path": request("POST /function/f HTTP/1.1", "Host: h"),
    "absolute form": request("POST http://h/async-function/f HTTP/1.1", "Host: h"),
    "percent-escape in the path": request("POST /async-function/f/a%2Fb HTTP/1.1", "Host: h"),
    "percent-escape in the name": request("POST /async-function/f%65 HTTP/1.1", "Host: h"),
    "dot segment": request("POST /async-function/f/a/../b HTTP/1.1", "Host: h"),
    "dot name": request("POST /async-function/.. HTTP/1.1", "Host: h"),
    "empty segment": request("POST /async-function/f//b HTTP/1.1", "Host: h"),
    "fragment": request("POST /async-function/f?a#b HTTP/1.1", "Host: h"),
    "extra space": request("POST  /async-function/f HTTP/1.1", "Host: h"),
    "chunked": request("POST /async-function/f HTTP/1.1", "Host: h", "Transfer-Encoding: chunked"),
    "expect": request("POST /async-function/f HTTP/1.1", "Host: h", "Expect: 100-continue"),
    "upgrade": request("POST /async-function/f HTTP/1.1", "Host: h", "Upgrade: websocket"),
    "connection upgrade": request(
        "POST /async-function/f HTTP/1.1", "Host: h", "Connection: Upgrade"
    ),
    "two lengths": request(
        "POST /async-function/f HTTP/1.1", "Host: h", "Content-Length: 1", "Content-Length: 1"
    ),
    "signed length": request("POST /async-function/f HTTP/1.1", "Host: h", "Content-Length: +1"),
    "length list": request("POST /async-function/f HTTP/1.1", "Host: h", "Content-Length: 1,1"),
    "body above the limit": request(
        "POST /async-function/f HTTP/1.1", "Host: h", f"Content-Length: {MAX_BODY + 1}"
    ),
    "two content types": request(
        "POST /async-function/f HTTP/1.1", "Host: h", "Content-Type: a", "content-type: b"
    ),
    "no host": request("POST /async-function/f HTTP/1.1", "X-A: b"),
    "two hosts": request("POST /async-function/f HTTP/1.1", "Host: h", "Host: i"),
    "folded line": request("POST /async-function/f HTTP/1.1", "Host: h", "X-A: b", " c"),
    "space before colon": request("POST /async-function/f HTTP/1.1", "Host: h", "X-A : b"),
    "no colon": request("POST /async-function/f HTTP/1.1", "Host: h", "X-A"),
    "bare LF": b"POST /async-function/f HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n",
    "bare CR": b"POST /async-function/f HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n",
    "NUL": request("POST /async-function/f HTTP/1.1", "Host: h", "X-A: b\x00c"),
    "non-ASCII": request("POST /async-function/f HTTP/1.1", "Host: h", "X-A: caf\xe9"),
}


@pytest.mark.parametrize("data", HANDED_OFF.values(), ids=HANDED_OFF.keys())
def test_what_the_lean_path_does_not_serve_is_handed_to_aiohttp(data: bytes) -> None:
    assert read_head(data, MAX_BODY) is HAND_OFF


def test_up_to_max_fields_headers_are_read_and_more_are_handed_off() -> None:
    def with_fields(count: int) -> bytes:
        extra = [f"X-{n}: v" for n in range(count - 1)]
        return request("POST /async-function/f HTTP/1.1", "Host: h", *extra)

    head = read_head(with_fields(MAX_FIELDS), MAX_BODY)
    assert isinstance(head, Head)
    assert len(head.headers) == MAX_FIELDS
    assert aiohttp_reads(with_fields(MAX_FIELDS)) is not None
    assert read_head(with_fields(MAX_FIELDS + 1), MAX_BODY) is HAND_OFF
    assert aiohttp_reads(with_fields(129)) is None  # why the lean path stops well before


# -- differential: whatever read_head accepts, aiohttp reads the same ---------------------------

# Mostly what is accepted, with now and then one thing that should not be.
NAMES = st.sampled_from(["Host", "host", "Content-Length", "X-Callback-Url", "Connection"])
OTHER_NAMES = st.text("abcXYZ-_.!#~0123", min_size=1, max_size=8)
RARE_NAMES = st.text("abc \t:@", min_size=0, max_size=3)
VALUES = st.one_of(
    st.text("abc:,./ -", max_size=10),
    st.sampled_from(["close", "keep-alive", "upgrade", "3", "03", "+3", "3,3", "-1"]),
    st.text(" \t\x01\x7f%", max_size=3),
)
SEPARATORS = st.sampled_from([":", ": ", ": ", ":\t", " :"])
FIELD = st.tuples(st.one_of(NAMES, OTHER_NAMES, OTHER_NAMES, RARE_NAMES), VALUES, SEPARATORS)
TARGETS = st.builds(
    lambda name, tail, query: f"/async-function/{name}{tail}{query}",
    st.one_of(st.text("abc.-_", min_size=1, max_size=4), st.text("ab.%", min_size=1, max_size=3)),
    st.one_of(st.just(""), st.text("/ab.%~:@", max_size=6).map(lambda t: "/" + t)),
    st.one_of(st.just(""), st.text("?=&a%#/ ", max_size=6).map(lambda q: "?" + q)),
)
METHODS = st.sampled_from(["POST", "POST", "POST", "GET"])
VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0"])


def aiohttp_reads(data: bytes) -> tuple[object, ...] | None:
    """What aiohttp's request parser makes of `data`: None if it refuses it."""
    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParser(BaseProtocol(loop), loop, 2**16)
        try:
            messages, _, _ = parser.feed_data(data)
        except HttpProcessingError:
            return None
        if not messages:
            return None
        message, _ = messages[0]
        length = message.headers.get("Content-Length")
        return (
            message.method,
            message.url.path,
            message.url.raw_query_string,
            list(message.headers.items()),
            not message.should_close,
            int(length) if length is not None else 0,
            message.chunked,
        )
    finally:
        loop.close()


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    METHODS,
    TARGETS,
    VERSIONS,
    st.lists(FIELD, max_size=3),
    st.lists(FIELD, max_size=3),
    st.binary(max_size=8),
)
def test_whatever_is_accepted_aiohttp_reads_the_same_way(
    method: str,
    target: str,
    version: str,
    before: list[tuple[str, str, str]],
    after: list[tuple[str, str, str]],
    body: bytes,
) -> None:
    fields = [*before, ("Host", "gw:8080", ": "), *after]
    lines = [f"{method} {target} {version}"] + [f"{n}{sep}{v}" for n, v, sep in fields]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    head = read_head(data, MAX_BODY)
    if not isinstance(head, Head):
        return
    theirs = aiohttp_reads(data[: head.body_start] + b"\0" * head.body_length)
    assert theirs is not None, "accepted a request aiohttp refuses"
    path = f"/async-function/{head.name}" + (f"/{head.tail}" if head.tail else "")
    if target.split("?")[0].endswith("/") and not head.tail:
        path += "/"
    assert theirs == (
        "POST",
        path,
        head.query_string,
        head.headers,
        head.keep_alive,
        head.body_length,
        False,
    )


# -- function calls (`/function/...`), read only when the listener proxies them ------------------


def test_a_function_call_is_read_with_its_method_path_and_query() -> None:
    data = request(
        "DELETE /function/echo.team/sub/?a=%20b&c=d+e;f:@/? HTTP/1.1",
        "Host: gw",
        "Authorization: Basic dTpw",
    )
    head = read_head(data, MAX_BODY, functions=True)
    assert isinstance(head, Head)
    assert head.proxied
    assert (head.method, head.name, head.path) == (
        "DELETE",
        "echo.team",
        "/function/echo.team/sub/",
    )
    assert head.query_string == "a=%20b&c=d+e;f:@/?"
    assert ("Authorization", "Basic dTpw") in head.headers
    assert read_head(data, MAX_BODY) is HAND_OFF  # not read unless the listener proxies


def test_an_async_call_is_not_mistaken_for_a_function_call() -> None:
    head = read_head(
        request("POST /async-function/f HTTP/1.1", "Host: h"), MAX_BODY, functions=True
    )
    assert isinstance(head, Head)
    assert not head.proxied


FUNCTION_CALLS_HANDED_OFF = {
    "HEAD": request("HEAD /function/f HTTP/1.1", "Host: h"),
    "OPTIONS": request("OPTIONS /function/f HTTP/1.1", "Host: h"),
    "percent-escape in the path": request("GET /function/f/a%20b HTTP/1.1", "Host: h"),
    "encoded slash": request("GET /function/f/a%2Fb HTTP/1.1", "Host: h"),
    "encoded dot segment": request("GET /function/f/%2e%2e/x HTTP/1.1", "Host: h"),
    "dot segment": request("GET /function/f/../system/functions HTTP/1.1", "Host: h"),
    "escape yarl decodes": request("GET /function/f?a=%41 HTTP/1.1", "Host: h"),
    "encoded slash in the query": request("GET /function/f?a=%2F HTTP/1.1", "Host: h"),
    "lower-case escape": request("GET /function/f?a=%2b HTTP/1.1", "Host: h"),
    "character yarl escapes": request("GET /function/f?a=<b> HTTP/1.1", "Host: h"),
    "chunked": request("POST /function/f HTTP/1.1", "Host: h", "Transfer-Encoding: chunked"),
    "expect": request("PUT /function/f HTTP/1.1", "Host: h", "Expect: 100-continue"),
    "body above the limit": request(
        "POST /function/f HTTP/1.1", "Host: h", f"Content-Length: {MAX_BODY + 1}"
    ),
}


@pytest.mark.parametrize(
    "data", FUNCTION_CALLS_HANDED_OFF.values(), ids=FUNCTION_CALLS_HANDED_OFF.keys()
)
def test_function_calls_the_lean_path_is_unsure_of_are_handed_to_aiohttp(data: bytes) -> None:
    assert read_head(data, MAX_BODY, functions=True) is HAND_OFF


FUNCTION_TARGETS = st.builds(
    lambda name, tail, query: f"/function/{name}{tail}{query}",
    st.one_of(
        st.sampled_from(["echo", "f.team-a", "a_b"]), st.text("ab.%", min_size=1, max_size=3)
    ),
    st.one_of(st.just(""), st.text("/ab.~:@;", max_size=6).map(lambda t: "/" + t)),
    st.one_of(
        st.just(""),
        st.lists(
            st.one_of(
                *[st.sampled_from(list("?=&a/:@!$'()*+,;~"))] * 3,
                *[st.integers(0, 255).map(lambda n: f"%{n:02X}")] * 2,
                st.integers(0, 255).map(lambda n: f"%{n:02x}"),
                st.sampled_from(list('<>[]{}|^`\\"#% ')),
            ),
            max_size=5,
        ).map(lambda parts: "?" + "".join(parts)),
    ),
)
FUNCTION_METHODS = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
PLAIN_FIELD = st.tuples(
    st.sampled_from(["X-A", "Authorization", "Content-Type", "Connection", "Content-Length"]),
    st.sampled_from(["a", "Basic dTpw", "close", "keep-alive", "3", "0"]),
    SEPARATORS,
)
FUNCTION_FIELDS = st.lists(st.one_of(PLAIN_FIELD, PLAIN_FIELD, FIELD), max_size=3)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(
    FUNCTION_METHODS,
    FUNCTION_TARGETS,
    VERSIONS,
    FUNCTION_FIELDS,
    FUNCTION_FIELDS,
    st.binary(max_size=8),
)
def test_whatever_function_call_is_accepted_aiohttp_reads_and_forwards_the_same_way(
    method: str,
    target: str,
    version: str,
    before: list[tuple[str, str, str]],
    after: list[tuple[str, str, str]],
    body: bytes,
) -> None:
    """aiohttp's parser reads the same request, and aiohttp's client (yarl) would send the
    same path and query to the upstream as ferry's http1 client does."""
    fields = [*before, ("Host", "gw:8080", ": "), *after]
    lines = [f"{method} {target} {version}"] + [f"{n}{sep}{v}" for n, v, sep in fields]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    head = read_head(data, MAX_BODY, functions=True)
    event("accepted" if isinstance(head, Head) else "handed off")
    if not isinstance(head, Head):
        return
    assert head.proxied
    theirs = aiohttp_reads(data[: head.body_start] + b"\0" * head.body_length)
    assert theirs is not None, "accepted a request aiohttp refuses"
    assert theirs == (
        head.method,
        head.path,
        head.query_string,
        head.headers,
        head.keep_alive,
        head.body_length,
        False,
    )
    upstream = "http://up.example:8080" + head.path
    if head.query_string:
        upstream += "?" + head.query_string
    assert split_url(upstream)[1] == URL(upstream).raw_path_qs
