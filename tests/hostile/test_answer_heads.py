"""Answer heads a function (or anything posing as one) may send, now that heads are kept:
control characters, bytes that are not text, a head that never ends, thousands of fields and
an endless stream of distinct heads. Each is read the same way every time it comes (kept or
not), refused with an HttpError where it must be, and never grows what is kept past its bound
or stalls the client."""

from __future__ import annotations

import asyncio

import pytest

from connectors.core.http1 import Http1Client, HttpError
from connectors.core.http1 import answer as answer_module
from connectors.core.http1.answer import HEADS_KEPT, KEPT_HEAD_BYTES, MAX_HEAD
from tests.support.answers import feed_in_pieces
from tests.support.http1 import RawServer

kept = answer_module._head_kept

HOSTILE_HEADS = [
    b"HTTP/1.1 200 OK\r\nX-Nul: a\x00b\r\nContent-Length: 2",
    b"HTTP/1.1 200 OK\r\nX-Cr: a\rb\r\nContent-Length: 2",
    b"HTTP/1.1 200 OK\r\nX-Esc: \x1b[31mred\x7f\r\nContent-Length: 2",
    b"HTTP/1.1 200 OK\r\nX-Bytes: \xff\xfe\xc3\x28\r\nContent-Length: 2",
    b"HTTP/1.1 200 OK\r\nX-Dots: /a/%2e%2e/%2E%2E/../b\r\nContent-Length: 2",
    b"HTTP/1.1 200 OK\r\nX\x00Name: v\r\nContent-Length: 2",
    b"HTTP/1.1 200 \x00\x1b\r\nContent-Length: 2",
    b"HTTP/1.1 200 OK\r\n" + b"X-Many: v\r\n" * 5000 + b"Content-Length: 2",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: \x002",
]


def outcome(data: bytes) -> tuple[object, ...]:
    try:
        response = feed_in_pieces(data, [])
    except HttpError as exc:
        return ("refused", type(exc).__name__, str(exc))
    assert response is not None
    return ("read", response.status, response.reason, list(response.headers.items()), response.body)


@pytest.mark.parametrize("head", HOSTILE_HEADS)
def test_a_hostile_head_is_read_the_same_way_each_time_it_comes(head: bytes) -> None:
    data = head + b"\r\n\r\nok"
    kept.cache_clear()
    first = outcome(data)
    assert outcome(data) == first == outcome(data)  # the later ones from what was kept, if any
    seen = kept.cache_info()
    if len(head) > KEPT_HEAD_BYTES:
        assert (seen.hits, seen.misses, seen.currsize) == (0, 0, 0)  # never even looked up
    elif first[0] == "read" or "invalid Content-Length" in str(first[2]):
        # read once, then taken as kept (a length that cannot be read is refused per answer)
        assert (seen.hits, seen.currsize) == (2, 1)
    else:
        assert (seen.hits, seen.currsize) == (0, 0)  # a malformed head: refused, never kept


def test_a_head_that_never_ends_is_refused_at_its_bound_and_nothing_is_kept() -> None:
    kept.cache_clear()
    parser = answer_module.AnswerParser(False)
    line = b"X-More: " + b"v" * 100 + b"\r\n"
    with pytest.raises(HttpError, match="over 64 KiB"):
        parser.feed(b"HTTP/1.1 200 OK\r\n")
        for _ in range(MAX_HEAD // len(line) + 2):
            parser.feed(line)
    assert kept.cache_info().currsize == 0


def test_endless_distinct_heads_keep_what_is_kept_within_its_bound() -> None:
    kept.cache_clear()
    for index in range(HEADS_KEPT * 4):
        data = b"HTTP/1.1 200 OK\r\nX-Id: %d\r\nContent-Length: 2\r\n\r\nok" % index
        assert outcome(data)[:2] == ("read", 200)
    assert kept.cache_info().currsize == HEADS_KEPT


async def test_the_client_is_not_stalled_by_a_head_that_never_ends() -> None:
    endless = b"HTTP/1.1 200 OK\r\n" + b"X-More: " + b"v" * (MAX_HEAD + 1024)
    server = RawServer(lambda _: endless)
    await server.start()
    client = Http1Client(limit=2)
    try:
        for _ in range(2):
            with pytest.raises(HttpError, match="over 64 KiB"):
                await asyncio.wait_for(client.request("GET", server.url(), timeout=5.0), 10.0)
    finally:
        await client.close()
        await server.stop()
