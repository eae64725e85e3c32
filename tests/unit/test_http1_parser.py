"""The http1 answer parser on its own: any bytes, cut anywhere."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from connectors.core.http1 import HttpError
from tests.support.answers import feed_in_pieces

# Mostly well-formed heads followed by anything: the parser gets past the status line.
HEADS = st.sampled_from(
    [
        b"",
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
        b"HTTP/1.0 100 Continue\r\n\r\n",
    ]
)


@given(HEADS, st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_any_bytes_give_an_answer_nothing_or_an_http_error(
    head: bytes, data: bytes, cuts: list[int]
) -> None:
    with contextlib.suppress(HttpError):
        feed_in_pieces(head + data, cuts)


names = st.from_regex(r"X-[A-Za-z0-9]{1,8}", fullmatch=True)
values = st.from_regex(r"[ -~]{0,20}", fullmatch=True).map(str.strip)


@given(
    st.lists(st.tuples(names, values), max_size=4),
    st.binary(max_size=200),
    st.booleans(),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_a_valid_answer_is_read_the_same_wherever_it_is_cut(
    headers: list[tuple[str, str]], body: bytes, chunked: bool, cuts: list[int]
) -> None:
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    if chunked:
        pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
        payload = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        head += "Transfer-Encoding: chunked\r\n"
    else:
        payload = body
        head += f"Content-Length: {len(body)}\r\n"
    response = feed_in_pieces(head.encode() + b"\r\n" + payload, cuts)
    assert response is not None
    assert response.status == 200
    assert response.body == body
    for name, value in headers:
        assert value in response.headers.getall(name)
