"""Header bytes: text reaches the function as the same UTF-8 bytes whatever its neighbours
hold; anything else is base64 with `-Enc: b64`, null is empty with `-Enc: null`. Checked
against aiohttp's own request parser."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http_parser import HttpRequestParser
from hypothesis import given
from hypothesis import strategies as st

from connectors.core.header_values import bytes_header, text_header
from connectors.core.http1 import InvalidRequest, Origin, as_sent_text, encode_head, header_lines
from connectors.sqs.message import SqsMessage

ORIGIN = Origin("http", "127.0.0.1", 8080)


def head(headers: list[tuple[str, str]]) -> bytes:
    return encode_head("POST", "/function/fn", ORIGIN, headers, 0)


def aiohttp_headers(data: bytes) -> list[tuple[str, str]]:
    """The headers aiohttp's request parser reads from `data` (Host and Content-Length out)."""
    loop = asyncio.new_event_loop()
    try:
        parser = HttpRequestParser(BaseProtocol(loop), loop, 2**16)
        messages, _, _ = parser.feed_data(data)
        message, _ = messages[0]
        return [(k, v) for k, v in message.headers.items() if k not in {"Host", "Content-Length"}]
    finally:
        loop.close()


def recovered(found: dict[str, str], name: str) -> bytes | None:
    """What a function does to get a source's value back, as the docs describe it."""
    encoding = found.get(name + "-Enc")
    if encoding == "null":
        return None
    if encoding == "b64":
        return base64.b64decode(found[name])
    return found[name].encode("utf-8")


def test_text_is_the_same_utf8_bytes_with_or_without_a_cjk_neighbour() -> None:
    alone = head([("X-Kafka-Key", "café")])
    beside = head([("X-Kafka-Key", "café"), ("X-Kafka-Lang", "日本")])
    assert b"X-Kafka-Key: caf\xc3\xa9\r\n" in alone
    assert b"X-Kafka-Key: caf\xc3\xa9\r\n" in beside
    assert b"X-Kafka-Lang: \xe6\x97\xa5\xe6\x9c\xac\r\n" in beside


def test_a_null_value_is_empty_with_an_enc_null_companion_and_empty_stays_empty() -> None:
    assert bytes_header("X-Kafka-h", None) == [("X-Kafka-h", ""), ("X-Kafka-h-Enc", "null")]
    assert bytes_header("X-Kafka-h", b"") == [("X-Kafka-h", "")]


def test_text_a_header_cannot_carry_as_it_is_goes_base64() -> None:
    for text in (" padded", "trailing ", "two\nlines", "tab\there", "bell\x07"):
        (name, value), companion = text_header("X-SQS-Attr-a", text)
        assert name == "X-SQS-Attr-a"
        assert companion == ("X-SQS-Attr-a-Enc", "b64")
        assert base64.b64decode(value).decode() == text


def test_forwarded_answer_headers_go_out_as_the_bytes_that_came_in() -> None:
    for raw in ("café".encode(), b"\xff\xfe latin-1 \xe9", "日本".encode()):
        read_as = raw.decode("latin-1")  # how the answer reader hands header values on
        assert f"X-Out: {as_sent_text(read_as)}\r\n".encode("utf-8", "surrogateescape") in head(
            [("X-Out", as_sent_text(read_as))]
        )
        assert b"X-Out: " + raw + b"\r\n" in head([("X-Out", as_sent_text(read_as))])


names = st.from_regex(r"X-[A-Za-z0-9]{1,8}", fullmatch=True)
source_values = st.one_of(
    st.none(),
    st.binary(max_size=24),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@given(st.dictionaries(names, source_values, min_size=1, max_size=5))
def test_any_source_value_survives_aiohttps_parser_and_is_recovered_exactly(
    values: dict[str, bytes | None],
) -> None:
    headers = [pair for name, value in values.items() for pair in bytes_header(name, value)]
    found = dict(aiohttp_headers(head(headers)))
    for name, value in values.items():
        assert recovered(found, name) == value


printable_text = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=["Cs"], exclude_characters="\x7f"),
    max_size=16,
).map(lambda t: t.strip(" "))


@given(st.lists(st.tuples(names, printable_text), min_size=1, max_size=5))
def test_printable_text_reads_back_the_same_in_aiohttp_whatever_its_neighbours(
    headers: list[tuple[str, str]],
) -> None:
    data = head(headers)
    assert aiohttp_headers(data) == headers
    for name, value in headers:
        assert f"{name}: {value}\r\n".encode() in data


forwarded_bytes = st.binary(max_size=24).map(
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip(b" ")
)


@given(st.lists(st.tuples(names, forwarded_bytes), min_size=1, max_size=5))
def test_forwarded_answer_header_bytes_read_back_the_same_in_aiohttp(
    headers: list[tuple[str, bytes]],
) -> None:
    sent = [(name, as_sent_text(raw.decode("latin-1"))) for name, raw in headers]
    read = aiohttp_headers(head(sent))
    assert [(k, v.encode("utf-8", "surrogateescape")) for k, v in read] == headers


def test_sqs_attributes_follow_the_same_rule_and_binary_ones_are_always_base64() -> None:
    message = SqsMessage(
        queue_url="http://sqs/q",
        message_id="m-1",
        receipt="r",
        body="b",
        attributes={
            "bin": {"DataType": "Binary", "BinaryValue": b"plain"},
            "text": {"DataType": "String", "StringValue": "café 日本"},
            "lines": {"DataType": "String", "StringValue": "a\r\nb"},
        },
    )
    found = dict(message.headers())
    assert base64.b64decode(found["X-SQS-Attr-bin"]) == b"plain"
    assert found["X-SQS-Attr-bin-Enc"] == "b64"
    assert found["X-SQS-Attr-text"] == "café 日本"
    assert "X-SQS-Attr-text-Enc" not in found
    assert base64.b64decode(found["X-SQS-Attr-lines"]) == b"a\r\nb"
    assert found["X-SQS-Attr-lines-Enc"] == "b64"


def test_text_that_cannot_be_utf8_is_an_invalid_request_not_a_crash() -> None:
    with pytest.raises(InvalidRequest, match="not UTF-8"):
        head([("X-Broken", "half a pair \ud800")])


LINE_BREAKS = [ch for ch in map(chr, range(0x110000)) if len(f"a{ch}b".splitlines()) == 2]


def test_every_line_break_python_knows_goes_base64_in_text_and_in_bytes() -> None:
    assert {"\n", "\r", "\x85", "\u2028", "\u2029"} <= set(LINE_BREAKS)
    for ch in LINE_BREAKS:
        text = f"one{ch}two"
        assert text_header("X-SQS-Attr-a", text)[1] == ("X-SQS-Attr-a-Enc", "b64"), repr(ch)
        assert bytes_header("X-Kafka-h", text.encode())[1] == ("X-Kafka-h-Enc", "b64"), repr(ch)


@given(names, st.text(max_size=16))
def test_text_sent_as_it_is_has_no_line_break_and_the_rest_is_recovered_exactly(
    name: str, text: str
) -> None:
    for sent in (
        text_header(name, text),
        bytes_header(name, text.encode("utf-8", "surrogatepass")),
    ):
        found = dict(sent)
        if name + "-Enc" not in found:
            assert found[name].splitlines() in ([found[name]], [])
            found[name].encode("utf-8")  # no lone surrogate either: this would raise
        assert recovered(found, name) == text.encode("utf-8", "surrogatepass")


def test_a_lone_surrogate_in_an_attribute_goes_base64_not_into_a_failed_request() -> None:
    (_, value), companion = text_header("X-SQS-Attr-a", "a\ud800")
    assert companion == ("X-SQS-Attr-a-Enc", "b64")
    assert base64.b64decode(value) == "a\ud800".encode("utf-8", "surrogatepass")


header_pairs = st.lists(
    st.tuples(
        st.from_regex(r"[A-Za-z][-A-Za-z0-9]{0,12}", fullmatch=True),
        st.text(st.characters(exclude_categories=["Cs"]), max_size=16),
    ),
    max_size=5,
)


@given(header_pairs, header_pairs, st.sampled_from(["POST", "GET"]), st.integers(0, 3))
def test_headers_encoded_once_make_the_head_the_same_headers_make_each_time(
    each: list[tuple[str, str]], shared: list[tuple[str, str]], method: str, length: int
) -> None:
    """A connector writes the headers every call of a function carries once (`header_lines`):
    the head is byte for byte the one encode_head writes from all of them, and what it refuses
    is refused up front too."""
    target, both = "/function/fn", each + shared
    try:
        whole = encode_head(method, target, ORIGIN, both, length)
    except InvalidRequest:
        with pytest.raises(InvalidRequest):
            encode_head(method, target, ORIGIN, each, length, header_lines(shared))
        return
    assert encode_head(method, target, ORIGIN, each, length, header_lines(shared)) == whole
    if all(value.isprintable() for _, value in both):  # (aiohttp refuses other controls)
        assert aiohttp_headers(whole) == [(k, v.strip(" \t")) for k, v in both]


@pytest.mark.parametrize(
    "bad",
    [("Content-Type", "text/plain\r\nX-Evil: 1"), ("Bad Name", "v"), ("X-Nul", "a\x00b")],
)
def test_header_lines_refuse_what_would_break_the_head(bad: tuple[str, str]) -> None:
    with pytest.raises(InvalidRequest):
        header_lines([("X-Fine", "1"), bad])
