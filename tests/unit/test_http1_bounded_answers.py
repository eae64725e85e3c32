"""The http1 answer parser with a body bound: below it, the body aiohttp's parser reads; above
it, ResponseTooLarge, however the answer is framed and wherever the bytes are cut."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.core.http1 import ResponseTooLarge, wire
from connectors.core.http1.answer import AnswerParser
from tests.support.answers import aiohttp_reads, feed_in_pieces

FRAMINGS = st.sampled_from(["length", "chunked", "close"])


def answer(body: bytes, framing: str, chunk: int) -> bytes:
    head = b"HTTP/1.1 200 OK\r\n"
    if framing == "length":
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    if framing == "chunked":
        pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        coded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + coded
    return head + b"Connection: close\r\n\r\n" + body


def bounded_read(data: bytes, cuts: list[int], max_body: int) -> bytes:
    """Feed `data` in pieces to a parser bound to `max_body`; the body it read, or raise."""

    def within_bound(parser: AnswerParser) -> None:
        assert sum(map(len, parser.chunks)) <= max_body  # never more body held than allowed

    response = feed_in_pieces(data, cuts, max_body=max_body, after_each=within_bound)
    assert response is not None
    return response.body


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=300),
    FRAMINGS,
    st.integers(1, 64),
    st.integers(0, 320),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_a_body_within_the_bound_is_read_as_aiohttp_reads_it_and_a_longer_one_is_refused(
    body: bytes, framing: str, chunk: int, max_body: int, cuts: list[int]
) -> None:
    data = answer(body, framing, chunk)
    assert aiohttp_reads(data)[3] == body
    if len(body) <= max_body:
        assert bounded_read(data, cuts, max_body) == body
    else:
        with pytest.raises(ResponseTooLarge, match="response larger than max_response_bytes"):
            bounded_read(data, cuts, max_body)


def test_a_declared_length_over_the_bound_is_refused_before_any_body_byte() -> None:
    parser = AnswerParser(False, 1000)
    with pytest.raises(ResponseTooLarge) as refused:
        parser.feed(b"HTTP/1.1 201 Created\r\nContent-Length: 524288000\r\n\r\n")
    assert refused.value.status == 201
    assert refused.value.limit == 1000


def test_a_chunk_over_the_bound_is_refused_from_its_size_line() -> None:
    parser = AnswerParser(False, 1000)
    with pytest.raises(ResponseTooLarge):
        parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f400000\r\n")


@pytest.mark.parametrize("digits", ["9" * 20, "1" * 5000, "0" * 30 + "9" * 5000])
def test_a_content_length_of_any_number_of_digits_is_too_large_not_an_error(digits: str) -> None:
    parser = AnswerParser(False, 1000)
    with pytest.raises(ResponseTooLarge):
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: " + digits.encode() + b"\r\n\r\n")


def test_a_content_length_with_leading_zeros_is_its_value() -> None:
    parser = AnswerParser(False, 1000)
    response = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"0" * 40 + b"2\r\n\r\nok")
    assert response is not None and response.body == b"ok"


def test_header_names_kept_as_known_are_few_and_short() -> None:
    """Names from answers are remembered as valid tokens to skip the check next time; a
    function sending thousands of long distinct names cannot grow that memory past its bound."""
    for index in range(wire.VALID_NAMES_MAX + 100):
        assert wire.is_token(f"X-{index:08d}-" + "n" * 4000)
        assert wire.is_token(f"X-Short-{index}")
    assert len(wire.VALID_NAMES) <= wire.VALID_NAMES_MAX
    assert max(len(name) for name in wire.VALID_NAMES) <= wire.VALID_NAME_CHARS
    assert not wire.is_token("Bad Name")
