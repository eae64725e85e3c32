"""Fuzzing the lean listener's request reader (stays in CI, bounded example counts).

On any bytes `read_head` answers (a head, NEED_MORE or HAND_OFF) and never raises; whatever it
accepts, aiohttp's own parser reads the same way. The generated requests start valid and are
then mangled byte by byte, so most land near the edge of what is accepted.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.request_head import Head, Verdict, read_head
from tests.unit.test_request_head import aiohttp_reads

MAX_BODY = 1000
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID = (
    b"POST /async-function/echo/sub/path?x=1 HTTP/1.1\r\n"
    b"Host: gw:8080\r\n"
    b"X-Callback-Url: http://cb.example/done\r\n"
    b"Content-Length: 5\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
    b"hello"
)
NASTY = st.sampled_from(
    [b"\n", b"\r", b"\r\n", b"\0", b" ", b"\t", b":", b"%", b"%2e", b"..", b"/", b"\xff", b"\x80",
     b"Transfer-Encoding: chunked\r\n", b"Content-Length: 9\r\n", b"\r\n\r\n", b"?", b"#"]
)  # fmt: skip


@FUZZ
@given(st.binary(max_size=600))
def test_any_bytes_get_an_answer_and_never_an_exception(data: bytes) -> None:
    assert isinstance(read_head(data, MAX_BODY), Head | Verdict)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(VALID)), st.integers(0, 3), st.one_of(NASTY, st.binary(max_size=2))
        ),
        min_size=1,
        max_size=4,
    )
)
def test_a_mangled_request_is_read_as_aiohttp_reads_it_or_left_to_aiohttp(
    edits: list[tuple[int, int, bytes]],
) -> None:
    data = bytearray(VALID)
    for at, remove, insert in edits:
        at = min(at, len(data))
        data[at : at + remove] = insert
    head = read_head(bytes(data), MAX_BODY)
    if not isinstance(head, Head):
        return
    theirs = aiohttp_reads(bytes(data[: head.body_start]) + b"\0" * head.body_length)
    assert theirs is not None, "accepted a request aiohttp refuses"
    method, path, query, headers, keep_alive, length, chunked = theirs
    assert (method, query, headers, keep_alive, length, chunked) == (
        "POST",
        head.query_string,
        head.headers,
        head.keep_alive,
        head.body_length,
        False,
    )
    tail = f"/{head.tail}" if head.tail else ""
    assert str(path).rstrip("/") == f"/async-function/{head.name}{tail}".rstrip("/")
