"""Answer heads read once and kept: an answer read from a kept head is the answer aiohttp's
parser reads, framed for each request anew; what is kept is bounded, and a long or malformed
head is never kept."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.core.http1 import HttpError, Response, ResponseTooLarge
from connectors.core.http1 import answer as answer_module
from connectors.core.http1.answer import HEADS_KEPT, KEPT_HEAD_BYTES, AnswerParser
from tests.support.answers import aiohttp_reads, feed_in_pieces

kept = answer_module._head_kept


def read(
    data: bytes, cuts: list[int], head_only: bool = False, max_body: int = 1 << 20
) -> Response:
    response = feed_in_pieces(data, cuts, head_only, max_body)
    assert response is not None
    return response


names = st.from_regex(r"X-[A-Za-z0-9]{1,8}", fullmatch=True)
values = st.from_regex(r"[ -~]{0,20}", fullmatch=True).map(str.strip)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([200, 201, 202, 404, 429, 500, 503]),
    st.lists(st.tuples(names, values), max_size=4),
    st.binary(max_size=200),
    st.sampled_from(["length", "chunked", "close"]),
    st.lists(st.lists(st.integers(0, 400), max_size=5), min_size=3, max_size=3),
)
def test_an_answer_read_again_from_a_kept_head_is_the_one_aiohttp_reads(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    framing: str,
    cuts: list[list[int]],
) -> None:
    head = f"HTTP/1.1 {status} Reason\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    if framing == "length":
        head += f"Content-Length: {len(body)}\r\n"
        payload = body
    elif framing == "chunked":
        head += "Transfer-Encoding: chunked\r\n"
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        head += "Connection: close\r\n"
        payload = body
    data = head.encode() + b"\r\n" + payload
    expected = aiohttp_reads(data)
    for pieces in cuts:  # the first time reads the head, the next ones take it as kept
        response = read(data, pieces)
        got = (response.status, response.reason, list(response.headers.items()), response.body)
        assert got == expected
        assert response.body == body


def test_a_kept_head_is_framed_for_each_request_anew() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Same: 1\r\n\r\n"
    # an answer to HEAD has no body whatever it declares; the same head after GET has one
    assert read(data, [], head_only=True).body == b""
    assert read(data + b"hello", [3, 40]).body == b"hello"
    with pytest.raises(ResponseTooLarge):  # and a lower bound refuses it, kept or not
        read(data + b"hello", [], max_body=4)
    assert read(data, [], head_only=True).body == b""
    # Transfer-Encoding beside Content-Length: read chunked, the connection not used again
    both = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    for _ in range(2):
        parser = AnswerParser(False, 1 << 20)
        response = parser.feed(both + b"2\r\nok\r\n0\r\n\r\n")
        assert response is not None and response.body == b"ok"
        assert not parser.keep_alive
        parser = AnswerParser(True, 1 << 20)
        assert parser.feed(both) is not None
        assert parser.keep_alive  # no body read, so nothing to distrust


def test_heads_kept_are_few_and_a_repeated_one_is_read_once() -> None:
    kept.cache_clear()
    date = b"HTTP/1.1 200 OK\r\nDate: %d\r\nContent-Length: 2\r\n\r\nok"
    for second in range(HEADS_KEPT + 100):  # a new Date every second, for minutes
        assert read(date % second, []).body == b"ok"
    assert kept.cache_info().currsize <= HEADS_KEPT
    misses = kept.cache_info().misses
    for _ in range(5):
        assert read(date % (HEADS_KEPT + 99), [7]).body == b"ok"
    assert kept.cache_info().misses == misses  # read from the kept head, five times


def test_a_long_head_is_read_every_time_and_never_kept() -> None:
    kept.cache_clear()
    long_head = b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * KEPT_HEAD_BYTES + b"\r\n"
    for _ in range(3):
        response = read(long_head + b"Content-Length: 2\r\n\r\nok", [])
        assert response.headers["X-Big"] == "v" * KEPT_HEAD_BYTES
    assert kept.cache_info().currsize == 0
    assert kept.cache_info().misses == 0  # not even looked up


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0",
        b"HTTP/1.1 200 OK\r\nBad Name: 1",
        b"HTTP/2 200 OK",
    ],
)
def test_a_malformed_head_is_refused_every_time_and_never_kept(head: bytes) -> None:
    kept.cache_clear()
    for _ in range(3):
        with pytest.raises(HttpError):
            AnswerParser(False).feed(head + b"\r\n\r\n")
    assert kept.cache_info().currsize == 0


def test_a_bad_content_length_in_a_kept_head_is_refused_each_time_it_frames_a_body() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n"
    for _ in range(2):
        with pytest.raises(HttpError, match="invalid Content-Length"):
            AnswerParser(False).feed(head)
        assert AnswerParser(True).feed(head) is not None  # HEAD: no body to frame


def test_a_content_length_past_19_digits_is_too_large_even_under_a_larger_bound() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 25 + b"\r\n\r\n"
    for _ in range(2):
        with pytest.raises(ResponseTooLarge):
            AnswerParser(False, 10**40).feed(head)


def test_an_interim_answer_before_a_kept_head_is_passed_over_each_time() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    for cut in ([], [10], [30]):
        response = read(data, cut)
        assert (response.status, response.body) == (200, b"ok")


def test_answers_sharing_a_kept_head_cannot_change_each_others_headers() -> None:
    data = b"HTTP/1.1 200 OK\r\nX-Same: 1\r\nContent-Length: 0\r\n\r\n"
    first, second = read(data, []), read(data, [])
    with pytest.raises(TypeError):
        first.headers["X-Same"] = "2"  # type: ignore[index]
    assert second.headers["X-Same"] == "1"
