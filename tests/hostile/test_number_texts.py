"""Numbers that arrive as text (X-Start-Time, Retry-After, the not-before and expiry headers,
the console's paging): only plain ASCII digits of a bounded length are read as numbers.
`str.isdigit` also says yes to `²` (which `int` refuses) and to other scripts' digits (which
`int` reads), so a call or an answer carrying one must neither stop a worker nor be misread."""

from __future__ import annotations

import pytest

from asyncq.timing import header_seconds
from connectors.core.numbers import ascii_int
from connectors.core.retry import MAX_RETRY_AFTER_SECONDS, parse_retry_after
from ledger.entries import start_time_text
from queue_worker.process_span import queue_wait

HOSTILE = [
    "²",
    "³⁴",
    "١٢٣",
    "\uff11\uff12",
    "1_000",
    " 12",
    "12\n",
    "-5",
    "+5",
    "",
    "9" * 40,
    "1e9",
    "12\x00",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_hostile_text_is_a_number(text: str) -> None:
    assert ascii_int(text, 20) is None
    assert start_time_text(text) is None
    assert header_seconds({"Ferry-Not-Before": text}, "Ferry-Not-Before") is None
    assert queue_wait(text, 10**18) is None


def test_plain_digits_are_read_up_to_their_bound() -> None:
    assert ascii_int("0012", 4) == 12
    assert ascii_int("12345", 4) is None


@pytest.mark.parametrize("text", ["²", "١٢٣", "-5", "9" * 400, "1e9"])
def test_a_hostile_retry_after_is_no_wait_or_the_bounded_one(text: str) -> None:
    seconds = parse_retry_after(text)
    assert seconds is None or 0 <= seconds <= MAX_RETRY_AFTER_SECONDS


def test_a_retry_after_is_bounded() -> None:
    assert parse_retry_after("86400") == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after("7") == 7.0
