"""The http1 client reading answers: framing, keep-alive, and what it refuses to guess at.

A raw server writes exactly the bytes each test gives it; an aiohttp server stands for a
well-behaved function.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiohttp import web

from connectors.core.http1 import Http1Client, HttpError
from tests.support.http1 import OK, RawServer, Reply, serve


async def test_chunked_and_streamed_answers_are_read_whole(client: Http1Client) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    runner, base = await serve(handler)
    try:
        first = await client.request("GET", f"{base}/stream")
        second = await client.request("GET", f"{base}/stream")
    finally:
        await runner.cleanup()
    assert first.body == second.body == b"one,two,three"


async def test_keep_alive_reuses_one_connection(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await server.start()
    for _ in range(5):
        assert (await client.request("POST", server.url(), body=b"x")).body == b"ok"
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_connection_close_and_http_1_0_are_not_reused(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    answers = iter(
        [
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nb",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc",
        ]
    )
    server = raw(lambda _: next(answers))
    await server.start()
    bodies = [(await client.request("GET", server.url())).body for _ in range(3)]
    assert bodies == [b"a", b"b", b"c"]
    assert server.connections == 3


async def test_a_body_framed_by_the_close_is_read_to_the_end(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    server = raw(lambda _: b"HTTP/1.1 200 OK\r\n\r\nall of it")
    server.close_after_reply = True
    await server.start()
    response = await client.request("GET", server.url())
    assert response.body == b"all of it"


async def test_interim_answers_are_skipped_and_head_has_no_body(
    client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    def reply(request: bytes) -> bytes:
        if request.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"
        return (
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
            b"HTTP/1.1 204 No Content\r\n\r\n"
        )

    server = raw(reply)
    await server.start()
    head = await client.request("HEAD", server.url())
    empty = await client.request("POST", server.url(), body=b"x")
    assert (head.status, head.body) == (200, b"")
    assert (empty.status, empty.body) == (204, b"")
    assert server.connections == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_an_idempotent_request_on_a_connection_closed_unanswered_is_sent_once_more(
    method: str, client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    """The server answers, then drops the idle connection: the next call still succeeds."""
    server = raw(lambda _: None if len(server.requests) == 2 else OK)
    await server.start()
    first = await client.request(method, server.url(), body=b"1")
    second = await client.request(method, server.url(), body=b"2")
    assert first.body == second.body == b"ok"
    # The second call was written to the dropped connection, then once more to a new one.
    assert [r.endswith(b"2") for r in server.requests] == [False, True, True]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_post_the_server_read_before_closing_unanswered_is_not_sent_twice(
    method: str, client: Http1Client, raw: Callable[[Reply], RawServer]
) -> None:
    """The server reads the second request whole, then closes without a byte of answer: it may
    have acted on it, so the client says so instead of sending it again."""
    server = raw(lambda _: None if len(server.requests) == 2 else OK)
    await server.start()
    assert (await client.request(method, server.url(), body=b"1")).body == b"ok"
    with pytest.raises(HttpError, match=f"kept-alive connection without answering; a {method}"):
        await client.request(method, server.url(), body=b"2")
    assert [r.endswith(b"2") for r in server.requests] == [False, True]  # received once
    assert (await client.request(method, server.url(), body=b"3")).body == b"ok"  # and on


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 2x0 Bad\r\n\r\n", "malformed status line"),
        (b"SPDY/3 200 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nBad Header: 1\r\nContent-Length: 0\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 2\xb20 OK\r\n\r\n", "malformed status line"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "CRLF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed mid-answer"),
    ],
)
async def test_broken_answers_are_errors_not_guesses(
    client: Http1Client, raw: Callable[[Reply], RawServer], answer: bytes, error: str
) -> None:
    server = raw(lambda _: answer)
    server.close_after_reply = True
    await server.start()
    with pytest.raises(HttpError, match=error):
        await client.request("GET", server.url())
