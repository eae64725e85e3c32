"""How the delay and expiry headers are read: a table, as the front door and `ferry publish`
read them."""

from __future__ import annotations

import pytest

from asyncq.timing import CallTiming, TimingProblem, read_timing, timing_headers

NOW = 1_800_000_000.0
WEEK = 7 * 24 * 3600.0


@pytest.mark.parametrize(
    ("asked", "timing"),
    [
        ({}, None),
        ({"x-delay": "3s"}, CallTiming(NOW + 3, None)),
        ({"x-delay": "1.5"}, CallTiming(NOW + 1.5, None)),
        ({"x-not-before": str(NOW + 60)}, CallTiming(NOW + 60, None)),
        ({"x-not-before": "2027-01-15T09:01:00+01:00"}, CallTiming(NOW + 60, None)),
        ({"x-not-before": "1"}, CallTiming(None, None)),  # the past means now
        ({"x-delay": "0s"}, CallTiming(None, None)),
        ({"x-max-age": "30s"}, CallTiming(None, NOW + 30)),
        ({"x-delay": "1h", "x-max-age": "30s"}, CallTiming(NOW + 3600, NOW + 3630)),
        ({"x-expires-at": str(NOW + 5)}, CallTiming(None, NOW + 5)),
        ({"x-delay": "168h"}, CallTiming(NOW + WEEK, None)),
    ],
)
def test_what_the_headers_ask_for(asked: dict[str, str], timing: CallTiming | None) -> None:
    assert read_timing(asked, now=NOW, max_delay=WEEK) == timing


@pytest.mark.parametrize(
    ("asked", "reason"),
    [
        ({"x-delay": "-1s"}, "negative"),
        ({"x-delay": "later"}, "not a duration"),
        ({"x-delay": "168h1s"}, "beyond max_delay"),
        ({"x-not-before": "next week"}, "RFC 3339"),
        ({"x-not-before": "2027-01-15T08:00:00"}, "zone"),
        ({"x-not-before": "1e300"}, "not a time"),
        ({"x-not-before": "nan"}, "not a time"),
        ({"x-delay": "1s", "x-not-before": "1"}, "not both"),
        ({"x-max-age": "1s", "x-expires-at": "1"}, "not both"),
        ({"x-max-age": "0"}, "more than 0s"),
        ({"x-expires-at": str(NOW - 1)}, "not after now"),
        ({"x-delay": "1m", "x-expires-at": str(NOW + 30)}, "not after its not-before"),
    ],
)
def test_what_is_refused_and_why(asked: dict[str, str], reason: str) -> None:
    with pytest.raises(TimingProblem, match=reason):
        read_timing(asked, now=NOW, max_delay=WEEK)


def test_only_the_four_headers_are_picked_out_whatever_their_case() -> None:
    headers = [("x-DELAY", " 3s "), ("X-Call-Id", "a"), ("X-Delay", "9s"), ("X-Max-Age", "1m")]
    assert timing_headers(headers) == {"x-delay": "3s", "x-max-age": "1m"}
